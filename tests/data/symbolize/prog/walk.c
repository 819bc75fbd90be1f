/* Second compile unit: the same helpers inlined again, with a nested chain. */
#include "helpers.h"

static inline long twice(const struct node *head, int rounds)
{
	return sum_values(head, rounds) * 2;
}

__attribute__((noinline)) long walk(struct node *head, int rounds)
{
	long acc = twice(head, rounds);
	if (head->prev && node_empty(head->prev))
		acc += node_value(head->prev);
	return acc;
}
