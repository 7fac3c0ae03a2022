# 32-bit PVH test guest for Kite's microVM (GNU as, x86_64 ELF, .code32).
# Entered in flat protected mode, paging off, CS = 0x18. MODE (--defsym)
# picks the scenario; each prints through COM1 (port 0x3f8) and ends
# through isa-debug-exit at port 0xf4 (status = (code << 1) | 1):
#   0 hello, exit code 0x21          1 i8042 reset (port 0x64 <- 0xfe)
#   2 triple fault (empty IDT)       3 unknown ports + MMIO to nowhere
#   4 hlt woken by the UART THRE interrupt through the PIC (IRQ 4)
#   5 -smp 2: wake the AP with INIT/SIPI, wait for its flag
#   6 jump into unbacked memory (KVM emulation failure)
#   7 hlt with interrupts off, forever (the host must stop it)
    .section .note.Xen, "a", @note
    .align 4
    .long 4, 4, 18              # namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long _start

    .code32
    .text
    .globl _start
_start:
    mov $0x1ff000, %esp
    mov $hello, %esi
    call puts
.if MODE == 0
    mov $0x21, %al
    jmp exit
.endif
.if MODE == 1
    mov $0xfe, %al
    out %al, $0x64
1:  hlt
    jmp 1b
.endif
.if MODE == 2
    lidt idt0
    ud2
.endif
.if MODE == 3
    mov $0x2f0, %dx
    mov $0x55, %al
    out %al, %dx                # nobody there: logged, ignored
    in %dx, %al
    cmp $0xff, %al              # floating bus reads all ones
    jne fail
    movl $0x12345678, 0xd0000000  # MMIO to nowhere: dropped
    mov 0xd0000000, %eax        # ... and reads as 0
    test %eax, %eax
    jnz fail
    mov $ok3, %esi
    call puts
    mov $0x01, %al
    jmp exit
.endif
.if MODE == 4
    mov $handler, %eax          # interrupt gate for vector 0x24 (PIC IRQ 4)
    mov $idt + 0x24 * 8, %edi
    mov %ax, (%edi)
    movw $0x18, 2(%edi)
    movw $0x8e00, 4(%edi)
    shr $16, %eax
    mov %ax, 6(%edi)
    lidt idtr
    mov $0x11, %al              # 8259: ICW1..ICW4, vectors 0x20/0x28
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $4, %al
    out %al, $0x21
    mov $2, %al
    out %al, $0xa1
    mov $1, %al
    out %al, $0x21
    out %al, $0xa1
    mov $0xef, %al              # unmask IRQ 4 only
    out %al, $0x21
    mov $0xff, %al
    out %al, $0xa1
    mov $0x3fc, %dx             # MCR: OUT2 gates the UART interrupt on a PC
    mov $0x08, %al
    out %al, %dx
    mov $0x3f9, %dx             # IER: transmitter-empty interrupt
    mov $0x02, %al
    out %al, %dx
    sti
1:  hlt
    cmpb $0, flag
    je 1b
irq_done:
    cli
    mov $ok4, %esi
    call puts
    mov $0x02, %al
    jmp exit
handler:
    push %eax
    push %edx
    movb $1, flag
    mov $0x3fa, %dx             # IIR read acknowledges THRE
    in %dx, %al
    mov $0x3f9, %dx             # IER = 0: no more interrupts
    xor %al, %al
    out %al, %dx
    mov $0x20, %al              # EOI
    out %al, $0x20
    # No iret: nested PVM's instruction emulator fails on it, and the
    # handler having run is what this test checks.
    jmp irq_done
.endif
.if MODE == 5
    mov $ap_start, %esi         # real-mode trampoline to 0x10000
    mov $0x10000, %edi
    mov $(ap_end - ap_start), %ecx
    rep movsb
    movl $0x1ff, 0xfee000f0     # SVR: software-enable the local APIC
    movl $(1 << 24), 0xfee00310 # ICR high: APIC id 1
    movl $0x4500, 0xfee00300    # INIT
    movl $0x4610, 0xfee00300    # SIPI, vector 0x10 -> 0x10000
    movl $0x4610, 0xfee00300    # second SIPI, as the MP spec says
    mov $200000000, %ecx
1:  cmpb $1, 0x10100
    je 2f
    pause
    loop 1b
    jmp fail
2:  mov $ok5, %esi
    call puts
    mov $0x03, %al
    jmp exit
    .code16
ap_start:
    movb $1, %cs:0x100
1:  cli
    hlt
    jmp 1b
ap_end:
    .code32
.endif
.if MODE == 6
    mov $0xd0000000, %eax
    jmp *%eax
.endif
.if MODE == 7
    cli                         # asleep for good: only the host can end this VM
1:  hlt
    jmp 1b
.endif

fail:
    mov $bad, %esi
    call puts
    mov $0x7f, %al
exit:
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

hello: .asciz "Hello from a PVH guest\n"
ok3:   .asciz "unassigned ports and MMIO ignored\n"
ok4:   .asciz "woken by IRQ 4\n"
ok5:   .asciz "AP is up\n"
bad:   .asciz "FAIL\n"
    .align 8
idt0:  .word 0
       .long 0
idtr:  .word 256 * 8 - 1
       .long idt
flag:  .byte 0
    .align 8
idt:   .space 256 * 8
