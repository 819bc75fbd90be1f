// SPDX-License-Identifier: GPL-2.0
/*
 * crashfleet e2e: a module whose /proc file dereferences a NULL device pointer at offset 0x60
 * when written, so that the end-to-end test crashes the kernel inside a module of its own.
 */
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/uaccess.h>

struct e2e_dev {
	char pad[0x60];
	unsigned long pending;
};

static struct e2e_dev *e2e_device;	/* never set: the bug */

static noinline unsigned long e2e_oops_pending(struct e2e_dev *dev)
{
	return READ_ONCE(dev->pending);
}

static ssize_t e2e_oops_write(struct file *file, const char __user *buf, size_t len, loff_t *pos)
{
	pr_info("crashfleet_e2e: dereferencing a NULL device\n");
	if (e2e_oops_pending(e2e_device))
		pr_info("crashfleet_e2e: pending\n");
	return len;
}

static const struct proc_ops e2e_oops_ops = {
	.proc_write = e2e_oops_write,
};

static int __init e2e_oops_init(void)
{
	return proc_create("crashfleet_e2e", 0200, NULL, &e2e_oops_ops) ? 0 : -ENOMEM;
}

static void __exit e2e_oops_exit(void)
{
	remove_proc_entry("crashfleet_e2e", NULL);
}

module_init(e2e_oops_init);
module_exit(e2e_oops_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crashfleet e2e: NULL dereference on write");
