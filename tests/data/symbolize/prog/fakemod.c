/* A stand-in kernel module object: DWARF plus a .modinfo section with name and vermagic. */
#define MODINFO(tag, text) \
	static const char __modinfo_##tag[] __attribute__((section(".modinfo"), used, aligned(1))) = #tag "=" text

MODINFO(name, "demo_mod");
MODINFO(vermagic, "6.1.0-99-amd64 SMP preempt mod_unload modversions ");

static inline int demo_bit(unsigned long v, int bit)
{
	return (v >> bit) & 1;
}

int demo_probe(unsigned long flags)
{
	return demo_bit(flags, 3) ? 17 : demo_bit(flags, 5);
}
