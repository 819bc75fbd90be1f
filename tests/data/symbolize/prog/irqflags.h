/* Inline helpers the way arch/x86/include/asm/irqflags.h has them: the instruction a halted CPU
 * sits on belongs to a header line, inlined into a function of a special text section. */
#ifndef IRQFLAGS_H
#define IRQFLAGS_H

extern volatile long halted;

static inline __attribute__((always_inline)) void clear_buffers(void)
{
	__asm__ volatile("" ::: "memory");
	halted += 2;
}

static inline __attribute__((always_inline)) void safe_halt(void)
{
	clear_buffers();
	halted = halted * 3 + 1;
}

#endif
