//! The vdso image has no file on disk, but the kernel maps the same image into every process: copy
//! it from this process's memory, where `getauxval(AT_SYSINFO_EHDR)` points at its ELF header.

/// Upper bound on the image size, to reject a nonsensical header.
const MAX_VDSO_SIZE: usize = 1 << 20;

/// A copy of this process's vdso image, or `None` where there is none.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub(crate) fn read_own_image() -> Option<Vec<u8>> {
    // SAFETY: getauxval has no preconditions; it returns 0 for a missing entry.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if base == 0 {
        return None;
    }
    // SAFETY: AT_SYSINFO_EHDR points at the vdso's ELF header, mapped readable for the life of the
    // process; a 64-bit ELF header is 64 bytes.
    let header = unsafe { std::slice::from_raw_parts(base as *const u8, 64) };
    let size = image_size(header)?;
    // SAFETY: the kernel maps the whole image, section headers included (they come last), so
    // `base..base + size` is readable; `image_size` bounded `size` to a sane value.
    let image = unsafe { std::slice::from_raw_parts(base as *const u8, size) };
    Some(image.to_vec())
}

/// Where there is no vdso to read.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub(crate) fn read_own_image() -> Option<Vec<u8>> {
    None
}

/// The size of a 64-bit little-endian ELF image from its header: the end of the program or section
/// header table, whichever comes last.
#[cfg_attr(
    not(all(target_os = "linux", target_pointer_width = "64")),
    allow(dead_code)
)]
fn image_size(header: &[u8]) -> Option<usize> {
    const ELFCLASS64: u8 = 2;
    const ELFDATA2LSB: u8 = 1;
    if header.get(..4)? != b"\x7fELF" || header[4] != ELFCLASS64 || header[5] != ELFDATA2LSB {
        return None;
    }
    let u64_at = |at: usize| Some(u64::from_le_bytes(header.get(at..at + 8)?.try_into().ok()?));
    let u16_at = |at: usize| {
        Some(u64::from(u16::from_le_bytes(
            header.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let phdrs_end = u64_at(0x20)?.checked_add(u16_at(0x36)? * u16_at(0x38)?)?;
    let shdrs_end = u64_at(0x28)?.checked_add(u16_at(0x3a)? * u16_at(0x3c)?)?;
    let size = usize::try_from(phdrs_end.max(shdrs_end)).ok()?;
    (64..=MAX_VDSO_SIZE).contains(&size).then_some(size)
}
