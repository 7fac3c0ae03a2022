/* Checksums of the benchmark guests, as printed by qemu-system-riscv64 (7.2)
 * and by Kite (both tiers agree). Update together with the programs. */
#define EXPECTED_INT 0x822e5abf8890e195ull
#define EXPECTED_FP 0xfb625ee755b59c3cull
#define EXPECTED_MEM 0x5bb3bb4642dda481ull
#define EXPECTED_BRANCHY 0xc97690a1658bb338ull
#define EXPECTED_CODE 0x6942a21cc7f48266ull
#define EXPECTED_PAR 0xb7fdff19efa8190full
#define EXPECTED_CALLS 0x636d989932113fc8ull
