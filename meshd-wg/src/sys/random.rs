//! The daemon's one source of OS randomness: seeds for the seeded RNGs everything else takes.

use rand_core::RngCore;

/// 32 bytes from the operating system's CSPRNG.
pub fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    #[expect(
        clippy::disallowed_types,
        reason = "the single place the daemon draws OS randomness"
    )]
    let mut os: rand_core::OsRng = rand_core::OsRng;
    os.fill_bytes(&mut seed);
    seed
}
