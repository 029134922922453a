/*
 * Migration test guest: dirties one byte of every 4 KiB page of a guest-physical
 * range in a pattern that a checker can verify after a migration.
 *
 * Assembled by GNU as directly (no C preprocessor): comments are C-style only.
 *
 * One 64 KiB image serves two boot paths:
 *  - as a -bios image: the reset vector (image offset 0xfff0) copies the low part
 *    of the image from the ROM's ISA alias (0xf0000) to 0x7c00;
 *  - as a raw disk: SeaBIOS loads the boot sector (image offset 0) to 0x7c00 and
 *    the boot sector loads the rest of the low part to 0x7e00.
 * Either way image offset N of the low part ends up at guest-physical 0x7c00 + N,
 * and both paths continue at common16.
 *
 * Guest-physical memory map (all below the 1 MiB default range start):
 *   0x1000  PML4, 0x2000 PDPT, 0x3000..0x6fff four PDs: identity map of 0..4 GiB
 *           with 2 MiB pages, user-accessible
 *   0x7000  status block (layout below), written by the guest, read by the harness
 *   0x7c00  image low part (boot sector, then parameter block at 0x7e00, then code)
 *   0x7c00  stack top (grows down into the 0x7000 page)
 *
 * Page contents after the init pass, for every page P of [start, end):
 *   byte P+0: pass byte (incremented once per pass, in address order)
 *   bytes P+1..P+7: zero
 *   bytes P+8..P+15: P as a little-endian u64 (catches pages landing at the wrong address)
 *   bytes P+16..P+4095: zero
 *
 * Status block at 0x7000 (every field little-endian, naturally aligned, so a reader
 * of the running guest's RAM never sees a half-written field on x86):
 *   +0x00  "MIGTSTAT"
 *   +0x08  u64 pass counter (incremented once after every pass)
 *   +0x10  u64 pages written since the start marker (incremented after every page write)
 *   +0x18  u64 TSC at the last page write
 *   +0x20  u64 TSC frequency in Hz, measured against the PIT before the init pass
 *   +0x28  u64 asked dirty rate in pages per second (0: unpaced)
 *   +0x30  u64 schedule restarts: times the guest fell more than max-lag behind its
 *          schedule (vCPU stopped, host busy) and restarted it instead of bursting
 *   +0x38  u64 calibration spread: (max - min) / median of the PIT rounds, in ppm
 *   +0x40  u32 status layout version (2)
 *   +0x44  u32 calibration rounds rejected: an edge seen too late to time it
 *
 * The dirtying loop runs at CPL3 with IOPL=3: under a software hypervisor ring-0 code
 * is emulated, ring-3 code runs natively, and IOPL=3 keeps the serial port usable.
 * RDTSC is allowed at CPL3 (CR4.TSD clear), so pacing costs no exit.
 *
 * Pacing (pages per second r > 0, TSC frequency f): page n after the schedule base b
 * is written no earlier than TSC b + n * f / r. The schedule is absolute, so waiting
 * errors do not add up; a guest up to max-lag late catches up, beyond that the base
 * moves to now, so a vCPU that was stopped (migration downtime, `stop`) never bursts.
 */

	.set PML4,		0x1000
	.set PDPT,		0x2000
	.set PD0,		0x3000
	.set STATUS,		0x7000
	.set PASS_COUNTER,	0x7008
	.set PAGES_WRITTEN,	0x7010
	.set PROGRESS_TSC,	0x7018
	.set TSC_HZ,		0x7020
	.set ASKED_RATE,	0x7028
	.set SCHED_RESTARTS,	0x7030
	.set CAL_SPREAD,	0x7038
	.set STATUS_VERSION,	0x7040
	.set CAL_REJECTED,	0x7044
	.set STATUS_SIZE,	0x48
	.set STACK_TOP,		0x7c00
	.set LOAD_ADDR,		0x7c00
	.set COM1,		0x3f8
	.set PAGE_SIZE,		4096
	.set MIN_RANGE_START,	0x100000
	.set MAX_RANGE_END,	0x100000000

	/* PIT channel 2, gated through port 0x61, calibrates the TSC (as Linux does). */
	.set PIT_HZ,		1193182
	.set PIT_CTRL,		0x43
	.set PIT_CH2,		0x42
	.set PORT_B,		0x61
	.set CAL_LATCH,		23864	/* PIT ticks per round: 20 ms */
	.set CAL_ATTEMPTS,	64	/* rounds tried for three accepted ones (1.3 s at most) */
	.set CAL_BRACKET_SHIFT,	7	/* accept a round whose edges are known within 1/128 */
	.set CAL_POLL_LIMIT,	0x1000000	/* OUT2 polls before giving up: 16 M exits, far beyond 20 ms */

	.set SEL_CODE32,	0x08
	.set SEL_DATA,		0x10
	.set SEL_CODE64,	0x18
	.set SEL_UDATA,		0x20
	.set SEL_UCODE64,	0x28

/* ---------------------------------------------------------------- boot sector */
	.section .boot, "ax"
	.code16
	.globl boot_sector
boot_sector:
	cli
	ljmp	$0, $1f			/* SeaBIOS may enter as 07c0:0000: normalise CS */
1:	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$LOAD_ADDR, %sp
	sti				/* the BIOS disk service may wait for interrupts */
	movw	$disk_packet, %si
	movb	$0x42, %ah		/* extended read by LBA; DL holds the boot drive */
	int	$0x13
	cli
	jc	disk_error
	ljmp	$0, $common16
disk_error:
	movw	$msg_disk_error, %si
	movw	$COM1, %dx
2:	lodsb
	testb	%al, %al
	jz	3f
	outb	%al, %dx
	jmp	2b
3:	hlt
	jmp	3b

	.balign	4
disk_packet:
	.byte	0x10, 0
	.word	bootblock_sectors	/* sectors after the boot sector (linker script) */
	.word	LOAD_ADDR + 512, 0	/* buffer offset, segment */
	.quad	1			/* first LBA */
msg_disk_error:
	.asciz	"MIGT:EDISK\n"

	.org	510
	.byte	0x55, 0xaa

/* ---------------------------------------------------------------- parameter block */
/* Image offset 0x200, guest-physical 0x7e00. Patched by the harness; layout is v2. */
	.set	RAM_BASE, 0
	.include "bootblock-params.inc"

/* ---------------------------------------------------------------- ring-0 setup */
	.section .text, "ax"
	.code16
common16:
	cli
	cld
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$STACK_TOP, %sp
	lgdtl	gdt_pointer
	movl	%cr0, %eax
	orl	$1, %eax		/* CR0.PE */
	movl	%eax, %cr0
	ljmpl	$SEL_CODE32, $protected32

	.code32
protected32:
	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$STACK_TOP, %esp

	/* Page tables: RAM below 1 MiB may hold firmware leftovers, so clear it first. */
	movl	$PML4, %edi
	xorl	%eax, %eax
	movl	$(6 * PAGE_SIZE / 4), %ecx
	rep stosl
	movl	$(PDPT + 7), PML4	/* present, writable, user */
	movl	$(PD0 + 7), PDPT
	movl	$(PD0 + 0x1000 + 7), PDPT + 8
	movl	$(PD0 + 0x2000 + 7), PDPT + 16
	movl	$(PD0 + 0x3000 + 7), PDPT + 24
	movl	$PD0, %edi
	movl	$0x87, %eax		/* 2 MiB page: present, writable, user, PS */
	xorl	%edx, %edx
1:	movl	%eax, (%edi)
	movl	%edx, 4(%edi)
	addl	$8, %edi
	addl	$0x200000, %eax
	adcl	$0, %edx
	cmpl	$(PD0 + 0x4000), %edi
	jb	1b

	/* Status block: all zero (firmware leftovers), then the magic. */
	movl	$STATUS, %edi
	xorl	%eax, %eax
	movl	$(STATUS_SIZE / 4), %ecx
	rep stosl
	movl	$0x5447494d, STATUS	/* "MIGT" */
	movl	$0x54415453, STATUS + 4	/* "STAT" */
	movl	$2, STATUS_VERSION

	movl	$PML4, %eax
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$0x20, %eax		/* CR4.PAE */
	movl	%eax, %cr4
	movl	$0xc0000080, %ecx	/* EFER */
	rdmsr
	orl	$0x100, %eax		/* EFER.LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000000, %eax	/* CR0.PG */
	movl	%eax, %cr0
	ljmp	$SEL_CODE64, $long64

	.code64
long64:
	/* Validate the parameters once; a bad block stops the guest with a message. */
	movq	param_range_start, %r8
	movq	param_range_end, %r9
	movq	param_page_spin, %r10
	movq	param_pass_spin, %r11
	movq	$(PAGE_SIZE - 1), %rax
	testq	%rax, %r8
	jnz	bad_params
	testq	%rax, %r9
	jnz	bad_params
	cmpq	$MIN_RANGE_START, %r8
	jb	bad_params
	cmpq	%r9, %r8
	jae	bad_params
	movq	$MAX_RANGE_END, %rax
	cmpq	%rax, %r9
	ja	bad_params

	/*
	 * TSC frequency: median of three PIT rounds whose edges were seen promptly. A vCPU
	 * held up at an edge (host preemption, the BQL taken by a QMP command) makes a wide
	 * bracket; such a round is rejected and counted, up to CAL_ATTEMPTS rounds in all.
	 */
	movl	$CAL_ATTEMPTS, %r15d
	xorl	%ebx, %ebx		/* rounds accepted */
cal_next:
	decl	%r15d
	js	bad_calibration
	call	pit_round
	jc	bad_calibration
	shlq	$CAL_BRACKET_SHIFT, %rdx
	cmpq	%rax, %rdx
	jbe	1f
	incl	CAL_REJECTED
	jmp	cal_next
1:	movq	%r13, %r14		/* keep the last three: r14 <- r13 <- r12 <- new */
	movq	%r12, %r13
	movq	%rax, %r12
	incl	%ebx
	cmpl	$3, %ebx
	jb	cal_next
	cmpq	%r13, %r12		/* sort r12 <= r13 <= r14 */
	jbe	1f
	xchgq	%r12, %r13
1:	cmpq	%r14, %r13
	jbe	2f
	xchgq	%r13, %r14
2:	cmpq	%r13, %r12
	jbe	3f
	xchgq	%r12, %r13
3:	testq	%r13, %r13
	jz	bad_calibration
	movq	%r14, %rax		/* spread in ppm: (max - min) * 1e6 / median */
	subq	%r12, %rax
	movl	$1000000, %ecx
	mulq	%rcx
	divq	%r13
	movq	%rax, CAL_SPREAD
	movq	%r13, %rax		/* Hz = median TSC ticks * PIT_HZ / CAL_LATCH */
	movl	$PIT_HZ, %ecx
	mulq	%rcx
	movl	$CAL_LATCH, %ecx
	divq	%rcx
	movq	%rax, %r14
	movq	%r14, TSC_HZ

	/* pit_round used r10 and r11: the loop's registers again. */
	movq	param_page_spin, %r10
	movq	param_pass_spin, %r11

	/* Pacing: r15 = pages per second, rbp = the lag still made up, in TSC ticks. */
	movq	param_pages_per_second, %r15
	movq	%r15, ASKED_RATE
	movq	param_max_lag_us, %rax
	mulq	%r14
	movl	$1000000, %ecx
	divq	%rcx
	movq	%rax, %rbp

	/* Drop to ring 3 with IOPL=3 and interrupts off. */
	pushq	$(SEL_UDATA | 3)
	pushq	$STACK_TOP
	pushq	$0x3002			/* RFLAGS: IOPL=3, reserved bit 1 */
	pushq	$(SEL_UCODE64 | 3)
	pushq	$user_start
	iretq

bad_params:
	leaq	msg_bad_params, %rsi
	jmp	stop_with_message
bad_calibration:
	leaq	msg_bad_calibration, %rsi
stop_with_message:
	call	print
1:	hlt
	jmp	1b

/*
 * pit_round: one TSC measurement of CAL_LATCH PIT ticks. Channel 2 counts in mode 0 and
 * raises OUT2 (port 0x61 bit 5) at terminal count. Each edge is bracketed by TSC reads:
 * the count starts within [RSI, RDI] (around the write of its high byte) and OUT2 rose
 * within [R11, RAX] (before the last poll that saw it low, after the first that saw it
 * high). Returns RAX = the midpoint estimate in TSC ticks, RDX = the bracket width
 * (uncertainty), CF set if OUT2 never rises. Clobbers RCX, RSI, RDI, R10, R11.
 */
pit_round:
	inb	$PORT_B, %al
	andb	$0xfc, %al		/* bit 1 = 0: speaker off */
	orb	$0x01, %al		/* bit 0 = 1: channel 2 gate open */
	outb	%al, $PORT_B
	movb	$0xb0, %al		/* channel 2, lobyte/hibyte, mode 0, binary */
	outb	%al, $PIT_CTRL
	movb	$(CAL_LATCH & 0xff), %al
	outb	%al, $PIT_CH2
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, %rsi
	movb	$(CAL_LATCH >> 8), %al
	outb	%al, $PIT_CH2		/* counting starts with this write */
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, %rdi
	movq	%rsi, %r11
	movl	$CAL_POLL_LIMIT, %ecx
1:	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, %r10		/* before this poll */
	inb	$PORT_B, %al
	testb	$0x20, %al
	jnz	2f
	movq	%r10, %r11		/* OUT2 was still low after this */
	decl	%ecx
	jnz	1b
	stc
	ret
2:	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax		/* OUT2 was high before this */
	movq	%rax, %rdx		/* width = (RAX - R11) + (RDI - RSI) */
	subq	%r11, %rdx
	addq	%rdi, %rdx
	subq	%rsi, %rdx
	addq	%r11, %rax		/* estimate = ((RAX + R11) - (RSI + RDI)) / 2 */
	subq	%rsi, %rax
	subq	%rdi, %rax
	shrq	$1, %rax
	clc
	ret

/* print: NUL-terminated string at RSI to COM1. Clobbers RAX, RDX, RSI. */
print:
	movw	$COM1, %dx
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:	ret

/* ---------------------------------------------------------------- ring-3 loop */
/*
 * r8 = range start, r9 = range end, r10 = page spin, r11 = pass spin,
 * r12 = schedule base (TSC), r13 = pages written since the base, r14 = TSC Hz,
 * r15 = pages per second (0: unpaced), rbp = max lag in TSC ticks.
 */
user_start:
	/* Init pass: whole page zero, then the page's own address at +8. */
	movq	%r8, %rbx
1:	movq	%rbx, %rdi
	xorl	%eax, %eax
	movl	$(PAGE_SIZE / 8), %ecx
	rep stosq
	movq	%rbx, 8(%rbx)
	addq	$PAGE_SIZE, %rbx
	cmpq	%r9, %rbx
	jb	1b
	leaq	msg_start, %rsi
	call	print
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, %r12
	xorl	%r13d, %r13d

pass:
	movq	%r8, %rdi
page:
	testq	%r15, %r15
	jz	write
	movq	%r13, %rax		/* this page's slot: base + n * f / r */
	mulq	%r14
	divq	%r15
	leaq	(%rax,%r12), %rbx
1:	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, %rdx
	subq	%rbx, %rdx		/* now - slot */
	js	1b			/* early: wait */
	cmpq	%rbp, %rdx
	jbe	2f
	movq	%rax, %r12		/* too late to catch up: the schedule restarts now */
	xorl	%r13d, %r13d
	incq	SCHED_RESTARTS
2:	incq	%r13
write:
	incb	(%rdi)
	incq	PAGES_WRITTEN		/* after the write: never counts a page not yet dirtied */
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	movq	%rax, PROGRESS_TSC
	movq	%r10, %rcx
	testq	%rcx, %rcx
	jz	2f
1:	decq	%rcx
	jnz	1b
2:	addq	$PAGE_SIZE, %rdi
	cmpq	%r9, %rdi
	jb	page
	jmp	pass_end

/*
 * The end of a pass runs from the status page, on purpose. TCG before QEMU 9.0 (commit
 * 03bfc2188f, "physmem: Fix migration dirty bitmap coherency with TCG memory access")
 * does not re-arm dirty tracking of a page whose TLB entry stays hot across a dirty
 * bitmap sync, and the status page is written after every page: its updates would not
 * be migrated. Writes to a page holding translated code always take TCG's tracked slow
 * path, and code run once per pass keeps a translation there.
 */
	.section .statuspage, "ax"
pass_end:
	incq	PASS_COUNTER		/* one instruction: never half-done when the vCPU stops */
	movw	$COM1, %dx
	movb	$'B', %al
	outb	%al, %dx
	movq	%r11, %rcx
	testq	%rcx, %rcx
	jz	pass
1:	decq	%rcx
	jnz	1b
	jmp	pass

/* ---------------------------------------------------------------- data */
	.section .rodata, "a"
	.balign	8
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08 code32, ring 0 */
	.quad	0x00cf92000000ffff	/* 0x10 data, ring 0 */
	.quad	0x00af9a000000ffff	/* 0x18 code64, ring 0 */
	.quad	0x00cff2000000ffff	/* 0x20 data, ring 3 */
	.quad	0x00affa000000ffff	/* 0x28 code64, ring 3 */
gdt_end:
gdt_pointer:
	.word	gdt_end - gdt - 1
	.long	gdt
msg_start:
	.asciz	"MIGT:START\n"
msg_bad_params:
	.asciz	"MIGT:EPARAM\n"
msg_bad_calibration:
	.asciz	"MIGT:ECALIB\n"

/* ---------------------------------------------------------------- reset vector */
/*
 * Last 256 bytes of the image. The CPU starts at CS base 0xffff0000, IP 0xfff0,
 * so this code may only use relative jumps until it far-jumps to the RAM copy.
 */
	.section .reset, "ax"
	.code16
reset_copy:
	cli
	cld
	movw	$0xf000, %ax		/* 64 KiB BIOS: ISA alias at 0xf0000 */
	movw	%ax, %ds
	xorw	%si, %si
	xorw	%ax, %ax
	movw	%ax, %es
	movw	$LOAD_ADDR, %di
	movw	$bootblock_low_size, %cx
	rep movsb
	ljmp	$0, $common16

	.org	0xf0
	.globl reset_vector
reset_vector:
	jmp	reset_copy
	.org	0x100
