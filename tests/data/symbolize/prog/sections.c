/* Functions in the kernel's special text sections, a cold split and compiler clones, so that the
 * symbolizer is checked where vmlinux and modules keep them: .noinstr.text, .entry.text,
 * .cpuidle.text, .sched.text, .init.text (merged into .text or kept apart by the linker script,
 * separate sections in a module), foo.cold in .text.unlikely, foo.constprop.0 / foo.isra.0. */
#include <stdlib.h>
#include "irqflags.h"

#define SECTION(name) __attribute__((section(name), noinline))

volatile long halted;
volatile long counter;

SECTION(".cpuidle.text") void idle_halt(void)
{
	safe_halt();
}

SECTION(".cpuidle.text") void default_idle(void)
{
	idle_halt();
	counter++;
}

SECTION(".noinstr.text") long noinstr_enter(long regs)
{
	clear_buffers();
	return regs * 7 + counter;
}

SECTION(".entry.text") long entry_dispatch(long nr)
{
	if (nr > 400)
		return -1;
	return noinstr_enter(nr) + 1;
}

SECTION(".sched.text") void schedule_spin(int rounds)
{
	for (int i = 0; i < rounds; i++) {
		safe_halt();
		counter += i;
	}
}

SECTION(".init.text") int early_setup(int argc)
{
	counter = argc;
	safe_halt();
	return (int)counter;
}

__attribute__((noinline, cold)) void die_loudly(long why)
{
	halted = why;
	abort();
}

/* A rarely taken path calling a cold function: gcc -O2 moves it to checked_add.cold. */
__attribute__((noinline)) long checked_add(long a, long b)
{
	long sum = a + b;
	if (__builtin_expect(sum == 0x7654321, 0)) {
		counter += a;
		die_loudly(sum);
	}
	return sum;
}

/* Called only with a constant second argument, its result partly unused: constprop/isra clones. */
static __attribute__((noinline)) long scale(long *value, long factor, long unused)
{
	counter += unused;
	return *value * factor + counter;
}

long use_scale(long x)
{
	long y = x + 1;
	return scale(&x, 5, 0) + scale(&y, 5, 0);
}

int main(int argc, char **argv)
{
	(void)argv;
	long v = early_setup(argc);
	default_idle();
	schedule_spin(argc);
	v += entry_dispatch(argc) + checked_add(argc, 2) + use_scale(argc);
	return (int)(v & 1);
}
