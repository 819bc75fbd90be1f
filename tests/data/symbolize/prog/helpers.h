/* Static inline helpers: -O2 inlines them, so their lines show up as inline chains. */
#ifndef HELPERS_H
#define HELPERS_H

struct node {
	struct node *next, *prev;
	long value;
};

static inline int node_empty(const struct node *head)
{
	return head->next == head;
}

static inline long node_value(const struct node *n)
{
	if (node_empty(n))
		return -1;
	return n->next->value * 3 + n->value;
}

static inline long sum_values(const struct node *head, int rounds)
{
	long total = 0;
	for (int i = 0; i < rounds; i++)
		total += node_value(head) ^ i;
	return total;
}

#endif
