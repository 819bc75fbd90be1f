/* Assembly with line info but no DWARF functions, like the kernel's entry code: the symbolizer
 * must name it from the symbol table (an untyped label), as binutils does. */
	.text
	.globl	asm_add_twice
asm_add_twice:
	lea	(%rdi,%rsi), %rax
	add	%rsi, %rax
	ret
	.section .note.GNU-stack,"",@progbits
