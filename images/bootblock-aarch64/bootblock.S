/*
 * Migration test guest for AArch64 `virt`: the twin of images/bootblock/bootblock.S.
 * It dirties one byte of every 4 KiB page of a guest-physical range in the same pattern,
 * with the same parameter block, status block, pacing and serial markers.
 *
 * Assembled by GNU as directly (no C preprocessor): comments are C-style only.
 *
 * Booted as `qemu-system-aarch64 -M virt -bios bootblock-aarch64.bin`: QEMU puts the image at
 * the start of flash (guest-physical 0) and the vCPU starts there, at EL1 (EL2 with
 * virtualization=on, EL3 with secure=on: both drop to EL1 first). Only ARMv8.0 is used, no
 * EL2 or EL3 service, so it runs with -cpu max, cortex-a57 and, under KVM, -cpu host.
 *
 * Guest-physical memory map (identity-mapped once the MMU is on):
 *   0x00000000  flash: this image (entry, parameter block at 0x200, code, data, exception
 *               vectors at 0x800, which print MIGT:EFAULT and the syndrome); 2 MiB blocks
 *               of the first 128 MiB mapped Normal, read-only, executable
 *   0x09000000  PL011 UART (QEMU's serial 0); the rest of the first GiB mapped Device-nGnRnE
 *   0x40000000  RAM base. QEMU leaves the device tree here for firmware; it is not used and
 *               its first 32 KiB are overwritten:
 *   0x40000000  level-1 translation table (1 GiB per entry)
 *   0x40001000  level-2 translation table for the first GiB (2 MiB per entry)
 *   0x40007000  status page: status block (layout below), and from 0x40007800 a copy of the
 *               pass epilogue (see pass_end)
 *   0x40100000  lowest allowed range start (RAM base + 1 MiB, as x86's 1 MiB)
 *   No stack: the loop's state lives in registers, its counters in the status block.
 *   The guest cannot tell how much RAM there is (it does not read the device tree): a
 *   range beyond the end of RAM is the harness's mistake to refuse, as on x86.
 *
 * Page contents after the init pass, for every page P of [start, end), exactly as on x86:
 *   byte P+0: pass byte (incremented once per pass, in address order)
 *   bytes P+1..P+7: zero
 *   bytes P+8..P+15: P as a little-endian u64 (catches pages landing at the wrong address)
 *   bytes P+16..P+4095: zero
 *
 * Status block at 0x40007000, the x86 layout at RAM base + 0x7000 (every field
 * little-endian, naturally aligned and written by one single-copy-atomic store, so a reader
 * of the running guest's RAM never sees a half-written field; the counters are
 * read-modify-written in RAM as x86's `incq`, so an update the migration lost stays lost
 * on the destination instead of being healed from a register: pages written = pass
 * counter * range pages + pages already at the next pass byte (one less for the few
 * instructions between a page write and its count):
 *   +0x00  "MIGTSTAT"
 *   +0x08  u64 pass counter (incremented once after every pass)
 *   +0x10  u64 pages written since the start marker (incremented after every page write)
 *   +0x18  u64 CNTVCT_EL0 at the last page write (x86: TSC)
 *   +0x20  u64 CNTFRQ_EL0, the counter's frequency in Hz (x86: TSC Hz from the PIT)
 *   +0x28  u64 asked dirty rate in pages per second (0: unpaced)
 *   +0x30  u64 schedule restarts: times the guest fell more than max-lag behind its
 *          schedule (vCPU stopped, host busy) and restarted it instead of bursting
 *   +0x38  u64 calibration spread in ppm: always 0, nothing is calibrated
 *   +0x40  u32 status layout version (2)
 *   +0x44  u32 calibration rounds rejected: always 0
 *
 * Time is the generic timer's virtual counter, CNTVCT_EL0, at CNTFRQ_EL0 Hz: the
 * architecture provides both at EL1, QEMU (TCG) and KVM set the frequency, so nothing is
 * calibrated. A CNTFRQ_EL0 of 0 (firmware expected to set it) stops with MIGT:ECALIB.
 * The virtual counter stands still while QEMU stops the VM, on TCG and on KVM (unless
 * -cpu ...,kvm-no-adjvtime=on). A DMB ISHST orders each page write before the count
 * that says it was written, for a reader on another host CPU (x86 gets that from TSO).
 *
 * Pacing (pages per second r > 0, counter frequency f): page n after the schedule base b
 * is written no earlier than b + floor(n * f / r). The schedule is absolute, so waiting
 * errors do not add up; a guest up to max-lag late catches up, beyond that the base moves
 * to now, so a vCPU that was stopped (migration downtime, `stop`) never bursts. AArch64
 * has no 128-by-64 divide, so the slot is advanced by f / r per page with the remainder
 * carried (exact, no overflow however long it runs) instead of multiplying n * f.
 *
 * The MMU is on, with an identity map and RAM Normal write-back cacheable. With the MMU
 * off every data access would be Device-nGnRnE (non-cacheable, unaligned accesses fault):
 * fine on TCG, but under KVM the host (QEMU's migration thread, the harness reading guest
 * RAM) reads the same RAM through a cacheable mapping, and on hosts without FEAT_S2FWB
 * (before ARMv8.4: Cortex-A72, Neoverse N1 ...) those mismatched attributes lose coherency:
 * the host can read a stale cached line of a page the guest has since written to memory.
 * Every data access is still naturally aligned (SCTLR_EL1.A stays 0 anyway), and the page
 * tables are written before the MMU is on, aligned, then their cache lines invalidated.
 */

	.set RAM_BASE,		0x40000000
	.set L1_TABLE,		0x40000000
	.set L2_TABLE,		0x40001000
	.set STATUS,		0x40007000
	.set EPILOGUE,		0x40007800	/* STATUS + 0x800: copy of pass_end */
	.set ST_PASS_COUNTER,	0x08
	.set ST_PAGES_WRITTEN,	0x10
	.set ST_PROGRESS,	0x18
	.set ST_FREQ,		0x20
	.set ST_ASKED_RATE,	0x28
	.set ST_RESTARTS,	0x30
	.set ST_CAL_SPREAD,	0x38
	.set ST_VERSION,	0x40
	.set ST_CAL_REJECTED,	0x44
	.set STATUS_MAGIC,	0x544154535447494d	/* "MIGTSTAT" little-endian */
	.set PAGE_SIZE,		4096
	.set MIN_RANGE_START,	0x40100000
	.set MAX_RANGE_END,	0x140000000		/* RAM base + 4 GiB */

	/* PL011 */
	.set UART,		0x09000000
	.set UARTDR,		0x00
	.set UARTFR,		0x18
	.set UARTLCR_H,		0x2c
	.set UARTCR,		0x30
	.set FR_TXFF,		5		/* bit: transmit FIFO full */
	.set LCR_H_8N1_FIFO,	0x70		/* WLEN = 8 bits, FEN */
	.set CR_ENABLE,		0x301		/* UARTEN | TXE | RXE */

	/* System registers (ARMv8.0 encodings) */
	.set SCTLR_RES1,	0x30d00800	/* bits 29, 28, 23, 22, 20, 11 */
	.set SCTLR_MMU_ON,	SCTLR_RES1 | (1 << 12) | (1 << 2) | 1	/* I, C, M */
	.set MAIR_VALUE,	0xff00		/* attr0 Device-nGnRnE, attr1 Normal WB RW-allocate */
	.set TCR_VALUE,		25 | (1 << 8) | (1 << 10) | (3 << 12) | (25 << 16) | (1 << 23) | (2 << 30) | (1 << 32)
			/* T0SZ 25 (39-bit VA, walk starts at level 1), walks inner/outer WB cacheable,
			   inner shareable, TG0 4 KiB; TTBR1 walks off (EPD1, TG1 4 KiB); IPS 36 bits */
	.set HCR_RW,		1 << 31		/* EL1 is AArch64 */
	.set SCR_EL3_VALUE,	(1 << 10) | 0x30	/* RW, RES1 bits 5:4; NS = 0: stay Secure */
	.set SPSR_EL1H,		0x3c5		/* EL1h, D A I F masked */

	/* Block descriptors: AF, AttrIndx, SH, AP, XN */
	.set DESC_BLOCK,	0x1
	.set DESC_TABLE,	0x3
	.set DESC_AF,		1 << 10
	.set DESC_NORMAL,	(1 << 2) | (3 << 8)	/* AttrIndx 1, inner shareable */
	.set DESC_RO,		1 << 7			/* AP[2]: read-only at EL1 */
	.set DESC_XN,		3 << 53			/* UXN, PXN */
	.set RAM_BLOCK,		DESC_BLOCK | DESC_AF | DESC_NORMAL
	.set FLASH_BLOCK,	DESC_BLOCK | DESC_AF | DESC_NORMAL | DESC_RO
	.set DEVICE_BLOCK,	DESC_BLOCK | DESC_AF | DESC_XN	/* AttrIndx 0 */
	.set FLASH_BLOCKS,	64			/* 128 MiB of flash in 2 MiB blocks */

/* ---------------------------------------------------------------- entry */
	.section .entry, "ax"
	.globl _start
_start:
	mrs	x0, CurrentEL
	ubfx	x0, x0, #2, #2
	cmp	x0, #2
	b.eq	from_el2
	b.hi	from_el3
	b	el1_start

/* secure=on: leave EL3 for Secure EL1, where the flash, the RAM and the UART all are. */
from_el3:
	ldr	x0, =SCR_EL3_VALUE
	msr	scr_el3, x0
	mov	x0, #SPSR_EL1H
	msr	spsr_el3, x0
	adr	x0, el1_start
	msr	elr_el3, x0
	eret

/* virtualization=on: leave EL2 for EL1, nothing trapped, no stage 2, counters untouched. */
from_el2:
	mov	x0, #HCR_RW
	msr	hcr_el2, x0
	mov	x0, #3			/* CNTHCTL_EL2: EL1PCTEN, EL1PCEN */
	msr	cnthctl_el2, x0
	msr	cntvoff_el2, xzr	/* virtual counter = physical counter */
	mov	x0, #SPSR_EL1H
	msr	spsr_el2, x0
	adr	x0, el1_start
	msr	elr_el2, x0
	eret

/* ---------------------------------------------------------------- parameter block */
/* Image offset 0x200, guest-physical 0x200 (flash). Patched by the harness; layout is v2. */
	.set	RAM_BASE, 0x40000000
	.include "bootblock-params.inc"

/* ---------------------------------------------------------------- EL1 setup */
/*
 * Registers from here on:
 * x8 = range start, x9 = range end, x10 = page spin, x11 = pass spin,
 * x12 = next page's slot (counter ticks), x13 = page pointer, x14 = counter Hz,
 * x15 = pages per second (0: unpaced), x16 = max lag in counter ticks,
 * x17 = f / r, x18 = f % r, x19 = remainder carried (< r),
 * x20 = status block, x24 = UART, x25 = `pass` (the epilogue's way back), x26 = the epilogue in the status page.
 */
	.section .text, "ax"
el1_start:
	ldr	x0, =SCTLR_RES1		/* MMU and caches off, little-endian, no alignment check */
	msr	sctlr_el1, x0
	adr	x0, vectors		/* a fault says so on the UART instead of hanging */
	msr	vbar_el1, x0
	isb

	mov	x24, #UART
	str	wzr, [x24, #UARTCR]	/* disable before reprogramming, as the TRM asks */
	mov	w0, #LCR_H_8N1_FIFO
	str	w0, [x24, #UARTLCR_H]
	mov	w0, #CR_ENABLE
	str	w0, [x24, #UARTCR]

	/* Validate the parameters once; a bad block stops the guest with a message. */
	adr	x0, params
	ldp	x8, x9, [x0, #0x10]
	ldp	x10, x11, [x0, #0x20]
	ldp	x15, x16, [x0, #0x30]
	tst	x8, #(PAGE_SIZE - 1)
	b.ne	bad_params
	tst	x9, #(PAGE_SIZE - 1)
	b.ne	bad_params
	ldr	x0, =MIN_RANGE_START
	cmp	x8, x0
	b.lo	bad_params
	cmp	x8, x9
	b.hs	bad_params
	ldr	x0, =MAX_RANGE_END
	cmp	x9, x0
	b.hi	bad_params

	mrs	x14, cntfrq_el0
	cbz	x14, bad_frequency

	/* Level 2: the first GiB in 2 MiB blocks, flash Normal read-only, the rest Device. */
	ldr	x0, =L2_TABLE
	ldr	x2, =DEVICE_BLOCK
	ldr	x3, =FLASH_BLOCK
	mov	x1, #0
1:	cmp	x1, #FLASH_BLOCKS
	csel	x5, x3, x2, lo
	orr	x5, x5, x1, lsl #21
	str	x5, [x0, x1, lsl #3]
	add	x1, x1, #1
	cmp	x1, #512
	b.lo	1b
	/* Level 1: entry 0 -> level 2; RAM in 1 GiB blocks up to the range end; nothing else. */
	ldr	x0, =L1_TABLE
	ldr	x2, =(L2_TABLE | DESC_TABLE)
	str	x2, [x0]
	ldr	x3, =RAM_BLOCK
	mov	x1, #1
1:	lsl	x4, x1, #30
	orr	x5, x4, x3
	cmp	x4, x9
	csel	x5, x5, xzr, lo
	str	x5, [x0, x1, lsl #3]
	add	x1, x1, #1
	cmp	x1, #512
	b.lo	1b
	/*
	 * The tables were written non-cacheable (MMU off); drop any cache line of them so the
	 * cacheable table walks read what is in memory. 16 bytes: the smallest line there is.
	 */
	dsb	sy
	ldr	x0, =L1_TABLE
	add	x1, x0, #0x2000
1:	dc	ivac, x0
	add	x0, x0, #16
	cmp	x0, x1
	b.lo	1b
	dsb	sy

	ldr	x0, =MAIR_VALUE
	msr	mair_el1, x0
	ldr	x0, =TCR_VALUE
	msr	tcr_el1, x0
	ldr	x0, =L1_TABLE
	msr	ttbr0_el1, x0
	isb
	tlbi	vmalle1
	ic	iallu
	dsb	nsh
	isb
	ldr	x0, =SCTLR_MMU_ON
	msr	sctlr_el1, x0
	isb

	/* Status page: all zero (the device tree was here), then the magic. */
	ldr	x20, =STATUS
	mov	x0, x20
	add	x1, x20, #PAGE_SIZE
1:	stp	xzr, xzr, [x0], #16
	cmp	x0, x1
	b.lo	1b
	ldr	x0, =STATUS_MAGIC
	str	x0, [x20]
	mov	w0, #2
	str	w0, [x20, #ST_VERSION]
	str	x14, [x20, #ST_FREQ]
	str	x15, [x20, #ST_ASKED_RATE]

	/* The pass epilogue into the status page, then make it visible to instruction fetch. */
	adr	x0, epilogue_image
	ldr	x26, =EPILOGUE
	mov	x1, x26
	ldr	x2, =epilogue_size
1:	ldr	x3, [x0], #8
	str	x3, [x1], #8
	subs	x2, x2, #8
	b.hi	1b
	mov	x1, x26
	ldr	x2, =(EPILOGUE + epilogue_size)
1:	dc	cvau, x1
	add	x1, x1, #16
	cmp	x1, x2
	b.lo	1b
	dsb	ish
	ic	iallu
	dsb	ish
	isb
	adr	x25, pass

	/* Pacing: x17 = f / r, x18 = f % r, x16 = max lag in ticks = max-lag us * f / 1e6. */
	cbz	x15, 1f
	udiv	x17, x14, x15
	msub	x18, x17, x15, x14
1:	ldr	x1, =1000000
	udiv	x2, x16, x1		/* whole seconds */
	msub	x3, x2, x1, x16		/* the rest, in us */
	mul	x2, x2, x14
	mul	x3, x3, x14
	udiv	x3, x3, x1
	add	x16, x2, x3

	/* Init pass: whole page zero, then the page's own address at +8. */
	mov	x13, x8
1:	add	x1, x13, #PAGE_SIZE
	mov	x0, x13
2:	stp	xzr, xzr, [x0]
	stp	xzr, xzr, [x0, #16]
	stp	xzr, xzr, [x0, #32]
	stp	xzr, xzr, [x0, #48]
	add	x0, x0, #64
	cmp	x0, x1
	b.lo	2b
	str	x13, [x13, #8]
	mov	x13, x1
	cmp	x13, x9
	b.lo	1b

	adr	x1, msg_start
	bl	print
	mov	x19, #0
	isb
	mrs	x12, cntvct_el0		/* the schedule starts now */

pass:
	mov	x13, x8
page:
	cbz	x15, write
1:	mrs	x0, cntvct_el0
	subs	x1, x0, x12		/* now - slot */
	b.mi	1b			/* early: wait */
	cmp	x1, x16
	b.ls	2f
	mov	x12, x0			/* too late to catch up: the schedule restarts now */
	mov	x19, #0
	ldr	x2, [x20, #ST_RESTARTS]
	add	x2, x2, #1
	str	x2, [x20, #ST_RESTARTS]
2:	add	x12, x12, x17		/* the next page's slot: + f / r, remainder carried */
	add	x19, x19, x18
	cmp	x19, x15
	b.lo	write
	sub	x19, x19, x15
	add	x12, x12, #1
write:
	ldrb	w0, [x13]
	add	w0, w0, #1
	strb	w0, [x13]
	dmb	ishst			/* the page before the count that says it was written */
	ldr	x0, [x20, #ST_PAGES_WRITTEN]	/* counters live in RAM, as on x86: a lost */
	add	x0, x0, #1			/* update of the status page stays visible */
	str	x0, [x20, #ST_PAGES_WRITTEN]
	mrs	x0, cntvct_el0
	str	x0, [x20, #ST_PROGRESS]
	cbz	x10, 2f
	mov	x1, x10
1:	subs	x1, x1, #1
	b.ne	1b
2:	add	x13, x13, #PAGE_SIZE
	cmp	x13, x9
	b.lo	page
	br	x26			/* pass_end, in the status page */

bad_params:
	adr	x1, msg_bad_params
	b	stop_with_message
bad_frequency:
	adr	x1, msg_bad_frequency
stop_with_message:
	bl	print
1:	wfi
	b	1b

/*
 * Any exception taken to EL1 (none is expected: no interrupt is unmasked, no access
 * faults) prints MIGT:EFAULT, then its syndrome, return address and fault address, and
 * stops: on a host nobody can attach a debugger to, the line says what went wrong.
 */
fault:
	mov	x24, #UART
	mov	w0, #CR_ENABLE
	str	w0, [x24, #UARTCR]
	adr	x1, msg_fault
	bl	print
	mrs	x3, esr_el1
	bl	print_hex
	adr	x1, msg_elr
	bl	print
	mrs	x3, elr_el1
	bl	print_hex
	adr	x1, msg_far
	bl	print
	mrs	x3, far_el1
	bl	print_hex
	adr	x1, msg_newline
	b	stop_with_message

/* print_hex: x3 as 16 hex digits to the UART (x24). Clobbers x0, x2, x4, x5. */
print_hex:
	mov	x5, #60
1:	lsr	x0, x3, x5
	and	x0, x0, #0xf
	add	x4, x0, #'0'
	add	x0, x0, #('a' - 10)
	cmp	x4, #'9'
	csel	x0, x4, x0, ls
2:	ldr	w2, [x24, #UARTFR]
	tbnz	w2, #FR_TXFF, 2b
	str	w0, [x24, #UARTDR]
	subs	x5, x5, #4
	b.ge	1b
	ret

/* print: NUL-terminated string at x1 to the UART (x24). Clobbers x0, x1, x2. */
print:
1:	ldrb	w0, [x1], #1
	cbz	w0, 3f
2:	ldr	w2, [x24, #UARTFR]
	tbnz	w2, #FR_TXFF, 2b
	str	w0, [x24, #UARTDR]
	b	1b
3:	ret

	.ltorg

/*
 * The end of a pass runs from the status page, on purpose: this is its image, copied to
 * 0x40007800 at boot, position-independent (it leaves through x25). TCG before QEMU 9.0
 * (commit 03bfc2188f, "physmem: Fix migration dirty bitmap coherency with TCG memory
 * access") does not re-arm dirty tracking of a page whose TLB entry stays hot across a
 * dirty bitmap sync, and the status page is written after every page: its updates would
 * not be migrated. Writes to a page holding translated code always take TCG's tracked
 * slow path, and code run once per pass keeps a translation there. (In flash it would
 * not help: the page written has to be the page holding the code. Run from flash, a
 * 5-sync migration on 7.2 lost about 170 of the destination's pages-written increments;
 * run from here, none, and 10.0 and 11.1 lose none either way.)
 */
	.section .statuspage, "ax"
	.balign	8
epilogue_image:
pass_end:
	ldr	x0, [x20, #ST_PASS_COUNTER]
	add	x0, x0, #1
	str	x0, [x20, #ST_PASS_COUNTER]	/* one store: never half-done when the vCPU stops */
1:	ldr	w0, [x24, #UARTFR]
	tbnz	w0, #FR_TXFF, 1b
	mov	w0, #'B'
	str	w0, [x24, #UARTDR]
	cbz	x11, 3f
	mov	x1, x11
2:	subs	x1, x1, #1
	b.ne	2b
3:	br	x25
	.balign	8
epilogue_end:
	.globl	epilogue_size
	.set	epilogue_size, epilogue_end - epilogue_image

/* ---------------------------------------------------------------- data */
	.section .rodata, "a"
msg_start:
	.asciz	"MIGT:START\n"
msg_bad_params:
	.asciz	"MIGT:EPARAM\n"
msg_bad_frequency:
	.asciz	"MIGT:ECALIB\n"
msg_fault:
	.asciz	"MIGT:EFAULT\nesr=0x"
msg_elr:
	.asciz	" elr=0x"
msg_far:
	.asciz	" far=0x"
msg_newline:
	.asciz	"\n"

/* ---------------------------------------------------------------- exception vectors */
/* VBAR_EL1: 16 entries of 128 bytes, 2 KiB aligned; every one is a fault here. */
	.section .vectors, "ax"
	.balign	0x800
vectors:
	.rept	16
	b	fault
	.balign	128
	.endr
