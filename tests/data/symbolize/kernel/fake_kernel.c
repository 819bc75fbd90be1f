/* A miniature "kernel" for the task-list walk: the symbols and struct members `ps` reads, laid
 * out by the compiler, described by DWARF. Built with -DPRINT_OFFSETS it prints the offsets
 * (offsetof), the test's independent oracle for what DWARF says. */
#include <stddef.h>

struct list_head {
	struct list_head *next, *prev;
};

struct thread_info {
	unsigned long flags;
	unsigned long syscall_work;
	unsigned int status;
	unsigned int cpu;
};

struct task_struct {
	struct thread_info thread_info;
	unsigned int __state;
	void *stack;
	unsigned int flags;
	int on_cpu;
	struct {
		int prio;
		struct list_head tasks;
	};
	int exit_state;
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct list_head thread_group;
	char comm[16];
};

struct rq {
	unsigned int nr_running;
	struct task_struct *curr;
	struct task_struct *idle;
};

struct task_struct init_task;
unsigned long __per_cpu_offset[2];
struct task_struct *current_task;
struct rq runqueues;
unsigned long avenrun[3];
unsigned int nr_cpu_ids = 2;
unsigned long long jiffies_64; /* uptime: jiffies over HZ, HZ from the tick length */
unsigned long tick_nsec;

__attribute__((noinline)) int copy_process(struct task_struct *p)
{
	return p->pid + (int)sizeof(*p);
}

__attribute__((noinline)) int scheduler_tick(struct rq *rq)
{
	return (int)rq->nr_running + rq->idle->pid;
}

#ifdef PRINT_OFFSETS
#include <stdio.h>
int main(void)
{
	printf("tasks %zu\npid %zu\ntgid %zu\ncomm %zu\nreal_parent %zu\n__state %zu\nexit_state %zu\n"
	       "flags %zu\ncpu %zu\nthread_group %zu\nrq_idle %zu\nsize %zu\n",
	       offsetof(struct task_struct, tasks), offsetof(struct task_struct, pid),
	       offsetof(struct task_struct, tgid), offsetof(struct task_struct, comm),
	       offsetof(struct task_struct, real_parent), offsetof(struct task_struct, __state),
	       offsetof(struct task_struct, exit_state), offsetof(struct task_struct, flags),
	       offsetof(struct task_struct, thread_info.cpu), offsetof(struct task_struct, thread_group),
	       offsetof(struct rq, idle), sizeof(struct task_struct));
	return 0;
}
#else
int main(void)
{
	return copy_process(&init_task) + scheduler_tick(&runqueues);
}
#endif
