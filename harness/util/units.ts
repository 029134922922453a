// Binary size units, as QEMU counts guest RAM and migration bytes.

export const KiB = 1024;
export const MiB = 1024 * KiB;
