/* Test program for the symbolizer: inline chains, a cold split, two compile units. */
#include <stdio.h>
#include <stdlib.h>
#include "helpers.h"

long walk(struct node *head, int rounds);
__attribute__((noinline, cold)) void fail_loudly(const char *why);

static struct node nodes[4];

__attribute__((noinline)) static long pending(struct node *head)
{
	return node_empty(head) ? 0 : node_value(head);
}

__attribute__((noinline)) void fail_loudly(const char *why)
{
	fprintf(stderr, "failed: %s\n", why);
	abort();
}

int main(int argc, char **argv)
{
	struct node *head = &nodes[0];
	head->next = argc > 1 ? &nodes[1] : head;
	head->prev = head;
	nodes[1].value = atol(argc > 2 ? argv[2] : "7");
	nodes[1].next = head;
	long v = pending(head) + walk(head, argc * 3);
	if (v == 12345)
		fail_loudly("unlucky");
	printf("%ld\n", sum_values(head, argc) + v);
	return 0;
}
