# 64-bit test guest: entered like a Linux kernel through the 64-bit boot
# protocol (long mode, identity-mapped paging, rsi = boot_params). It checks
# the e820 count in boot_params, reads the local APIC version register over
# MMIO (0xfee00030, answered by the in-kernel LAPIC), reads the header of
# the first (empty) virtio-mmio transport through Kite's MMIO dispatch, writes and reads MMIO
# where nothing is mapped, then exits through isa-debug-exit with 0x10
# (status 0x21) or 0x7f on failure.
    .code64
    .text
    .globl _start
_start:
    mov $0x1ff000, %rsp
    lea hello(%rip), %rsi
    mov %rsi, %rbx
    call puts
    mov $0x7000, %rdi           # boot_params (rsi on entry, clobbered above)
    cmpb $3, 0x1e8(%rdi)        # e820_entries
    jne fail
    mov $0xfee00030, %rax       # LAPIC version: 0x14 on KVM
    mov (%rax), %eax
    cmp $0x10, %al
    jb fail
    mov $0xfeb00000, %rax       # virtio-mmio slot 0: Kite's MMIO dispatch
    cmpl $0x74726976, (%rax)    # magic "virt"
    jne fail
    cmpl $0, 8(%rax)            # device ID 0: empty slot
    jne fail
    mov $0xd0000000, %rax       # MMIO to nowhere
    movq $-1, (%rax)
    cmpq $0, (%rax)
    jne fail
    lea ok(%rip), %rsi
    call puts
    mov $0x10, %al
    out %al, $0xf4
fail:
    lea bad(%rip), %rsi
    call puts
    mov $0x7f, %al
    out %al, $0xf4
1:  hlt
    jmp 1b
puts:
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  ret
hello: .asciz "Hello from long mode\n"
ok:    .asciz "boot_params, LAPIC, virtio-mmio and unassigned MMIO ok\n"
bad:   .asciz "FAIL\n"
