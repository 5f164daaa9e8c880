# Synthetic x86_64 functions with known frame layouts, for the unwinder tests.
# f_outer: outermost frame (rip undefined), 16 bytes of frame.
# f_frame: rbp-based frame, CFA = rbp + 16, rbp saved at CFA-16.
# f_sized: no frame pointer, CFA = rsp + 48 after its prologue.
# f_leaf: no frame, CFA = rsp + 8.
# f_plt: a PLT-like stub whose CFA is a DWARF expression of rsp and rip:
#        CFA = rsp + 8 + ((rip & 15) >= 11 ? 8 : 0).
# f_sigtramp: a signal trampoline (CIE augmentation S): CFA = [rsp+16], rip at [rsp+8],
#        rbp at [rsp+24].
# f_nocfi: a frame-pointer function without any CFI.
# f_noreturn: ends with a call (CFA = rsp + 32), so its return address is the first byte of
#        f_after (CFA = rsp + 8): only a lookup at ra - 1 finds the right rule.
	.text
	.globl f_outer
f_outer:
	.cfi_startproc
	.cfi_undefined rip
	sub $8, %rsp
	.cfi_adjust_cfa_offset 8
	call f_frame
f_outer_ret:
	add $8, %rsp
	.cfi_adjust_cfa_offset -8
	ret
	.cfi_endproc

f_frame:
	.cfi_startproc
	push %rbp
	.cfi_def_cfa_offset 16
	.cfi_offset rbp, -16
	mov %rsp, %rbp
	.cfi_def_cfa_register rbp
	sub $32, %rsp
	call f_sized
f_frame_ret:
	call f_nocfi
	leave
	.cfi_def_cfa rsp, 8
	ret
	.cfi_endproc

f_sized:
	.cfi_startproc
	sub $40, %rsp
	.cfi_def_cfa_offset 48
f_sized_body:
	call f_leaf
f_sized_ret:
	add $40, %rsp
	.cfi_def_cfa_offset 8
	ret
	.cfi_endproc

f_leaf:
	.cfi_startproc
	nop
f_leaf_ip:
	nop
	ret
	.cfi_endproc

	.p2align 4
f_plt:
	.cfi_startproc
	.cfi_escape 0x0f, 0x0b, 0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22
	.fill 16, 1, 0x90
	.cfi_endproc

	nop
f_sigtramp:
	.cfi_startproc simple
	.cfi_signal_frame
	.cfi_escape 0x0f, 0x03, 0x77, 0x10, 0x06
	.cfi_escape 0x10, 0x10, 0x02, 0x77, 0x08
	.cfi_escape 0x10, 0x06, 0x02, 0x77, 0x18
	nop
f_sigtramp_ret:
	nop
	.cfi_endproc

f_nocfi:
	push %rbp
	mov %rsp, %rbp
	call f_leaf
f_nocfi_ret:
	pop %rbp
	ret

f_noreturn:
	.cfi_startproc
	sub $24, %rsp
	.cfi_def_cfa_offset 32
	call f_leaf
	.cfi_endproc
f_after:
	.cfi_startproc
	ret
	.cfi_endproc
	.section .note.GNU-stack,"",@progbits
