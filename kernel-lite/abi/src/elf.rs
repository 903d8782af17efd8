//! Reads the user image's ELF program headers: just what loading needs, every field checked.
//!
//! The user image is a static ELF64 `EXEC` file linked at [`USER_IMAGE_BASE`]. kernel-lite maps
//! each `PT_LOAD` segment with the permissions its flags say, and refuses a segment that is both
//! writable and executable (W^X) or that strays outside the user image window.

use crate::layout::{PAGE_SIZE, USER_IMAGE_BASE, USER_IMAGE_LIMIT};

/// Why a user image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than the ELF header or its program header table.
    Truncated,
    /// Not an ELF64, little-endian, x86-64 file.
    NotX86_64Elf,
    /// Not a statically linked executable (`ET_EXEC`); carries `e_type`.
    NotExecutable(u16),
    /// Program headers are not 56 bytes each.
    BadProgramHeaderSize(u16),
    /// Segment `index` lies outside the user image window or overflows.
    SegmentOutOfRange { index: usize },
    /// Segment `index`'s file range is outside the file or larger than its memory size.
    BadFileRange { index: usize },
    /// Segment `index` is both writable and executable.
    WritableAndExecutable { index: usize },
    /// Segments `index` and an earlier one share a page.
    OverlappingSegments { index: usize },
    /// The entry point is not inside an executable segment.
    EntryNotExecutable(u64),
    /// No loadable segment at all.
    NoSegments,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::Truncated => write!(f, "user image is truncated"),
            ElfError::NotX86_64Elf => write!(f, "user image is not an x86-64 ELF64 file"),
            ElfError::NotExecutable(t) => write!(f, "user image has ELF type {t}, not EXEC"),
            ElfError::BadProgramHeaderSize(s) => write!(f, "program headers of {s} bytes"),
            ElfError::SegmentOutOfRange { index } => {
                write!(f, "segment {index} lies outside the user image window")
            }
            ElfError::BadFileRange { index } => write!(f, "segment {index} has a bad file range"),
            ElfError::WritableAndExecutable { index } => {
                write!(f, "segment {index} is writable and executable (W^X)")
            }
            ElfError::OverlappingSegments { index } => {
                write!(f, "segment {index} shares a page with another segment")
            }
            ElfError::EntryNotExecutable(at) => {
                write!(f, "entry point {at:#x} is not in an executable segment")
            }
            ElfError::NoSegments => write!(f, "user image has no loadable segment"),
        }
    }
}

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Where it starts in memory (not necessarily page-aligned).
    pub vaddr: u64,
    /// Bytes in memory; the part past `file_bytes` is zero (`.bss`).
    pub mem_bytes: u64,
    /// Where its initialised bytes start in the file.
    pub file_offset: u64,
    /// How many initialised bytes.
    pub file_bytes: u64,
    pub writable: bool,
    pub executable: bool,
}

impl Segment {
    /// First page address the segment touches.
    pub fn first_page(&self) -> u64 {
        self.vaddr & !(PAGE_SIZE - 1)
    }

    /// One past the last page the segment touches.
    pub fn end_page(&self) -> u64 {
        (self.vaddr + self.mem_bytes).next_multiple_of(PAGE_SIZE)
    }
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const MAX_SEGMENTS: usize = 16;

/// A user image whose headers have been checked.
#[derive(Debug, Clone, Copy)]
pub struct UserImage<'a> {
    bytes: &'a [u8],
    entry: u64,
    segments: [Option<Segment>; MAX_SEGMENTS],
}

fn read<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], ElfError> {
    let end = at.checked_add(N).ok_or(ElfError::Truncated)?;
    let mut raw = [0u8; N];
    raw.copy_from_slice(bytes.get(at..end).ok_or(ElfError::Truncated)?);
    Ok(raw)
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, ElfError> {
    read::<2>(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, ElfError> {
    read::<4>(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, ElfError> {
    read::<8>(bytes, at).map(u64::from_le_bytes)
}

impl<'a> UserImage<'a> {
    /// Checks `bytes` as a user image.
    pub fn parse(bytes: &'a [u8]) -> Result<UserImage<'a>, ElfError> {
        let ident = read::<16>(bytes, 0)?;
        // Magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT; then e_machine EM_X86_64.
        if ident[..4] != *b"\x7fELF" || ident[4] != 2 || ident[5] != 1 || ident[6] != 1 {
            return Err(ElfError::NotX86_64Elf);
        }
        if u16_at(bytes, 18)? != 0x3e {
            return Err(ElfError::NotX86_64Elf);
        }
        let e_type = u16_at(bytes, 16)?;
        if e_type != 2 {
            return Err(ElfError::NotExecutable(e_type));
        }
        let entry = u64_at(bytes, 24)?;
        let ph_offset = u64_at(bytes, 32)?;
        let ph_size = u16_at(bytes, 54)?;
        let ph_count = u16_at(bytes, 56)? as usize;
        if ph_size != 56 {
            return Err(ElfError::BadProgramHeaderSize(ph_size));
        }
        let ph_offset = usize::try_from(ph_offset).map_err(|_| ElfError::Truncated)?;
        let mut segments = [None; MAX_SEGMENTS];
        let mut loaded = 0;
        for index in 0..ph_count {
            let header = ph_offset
                .checked_add(index * 56)
                .ok_or(ElfError::Truncated)?;
            if u32_at(bytes, header)? != PT_LOAD {
                continue;
            }
            let flags = u32_at(bytes, header + 4)?;
            let segment = Segment {
                file_offset: u64_at(bytes, header + 8)?,
                vaddr: u64_at(bytes, header + 16)?,
                file_bytes: u64_at(bytes, header + 32)?,
                mem_bytes: u64_at(bytes, header + 40)?,
                writable: flags & PF_W != 0,
                executable: flags & PF_X != 0,
            };
            Self::check_segment(bytes, &segment, index)?;
            for earlier in segments.iter().flatten() {
                let earlier: &Segment = earlier;
                if segment.first_page() < earlier.end_page()
                    && earlier.first_page() < segment.end_page()
                {
                    return Err(ElfError::OverlappingSegments { index });
                }
            }
            *segments
                .get_mut(loaded)
                .ok_or(ElfError::SegmentOutOfRange { index })? = Some(segment);
            loaded += 1;
        }
        if loaded == 0 {
            return Err(ElfError::NoSegments);
        }
        let image = UserImage {
            bytes,
            entry,
            segments,
        };
        if !image
            .segments()
            .any(|s| s.executable && (s.vaddr..s.vaddr + s.mem_bytes).contains(&entry))
        {
            return Err(ElfError::EntryNotExecutable(entry));
        }
        Ok(image)
    }

    fn check_segment(bytes: &[u8], segment: &Segment, index: usize) -> Result<(), ElfError> {
        let end = segment
            .vaddr
            .checked_add(segment.mem_bytes)
            .ok_or(ElfError::SegmentOutOfRange { index })?;
        if segment.vaddr < USER_IMAGE_BASE || end > USER_IMAGE_LIMIT {
            return Err(ElfError::SegmentOutOfRange { index });
        }
        let file_end = segment
            .file_offset
            .checked_add(segment.file_bytes)
            .ok_or(ElfError::BadFileRange { index })?;
        if segment.file_bytes > segment.mem_bytes || file_end > bytes.len() as u64 {
            return Err(ElfError::BadFileRange { index });
        }
        if segment.writable && segment.executable {
            return Err(ElfError::WritableAndExecutable { index });
        }
        Ok(())
    }

    /// The entry point: libos's `_start`.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// The loadable segments in file order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.segments.iter().flatten().copied()
    }

    /// The initialised bytes of `segment`.
    pub fn file_bytes(&self, segment: &Segment) -> &'a [u8] {
        &self.bytes[segment.file_offset as usize..][..segment.file_bytes as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal EXEC image: one RX segment holding the entry point, one RW segment with bss.
    fn image(rw_flags: u32) -> std::vec::Vec<u8> {
        let mut elf = std::vec![0u8; 0x200];
        elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        elf[16..18].copy_from_slice(&2u16.to_le_bytes());
        elf[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        elf[24..32].copy_from_slice(&(USER_IMAGE_BASE + 0x10).to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        let mut header = |at: usize, flags: u32, vaddr: u64, filesz: u64, memsz: u64| {
            elf[at..at + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            elf[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            elf[at + 8..at + 16].copy_from_slice(&0x100u64.to_le_bytes());
            elf[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            elf[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
            elf[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
        };
        header(64, 5, USER_IMAGE_BASE, 0x40, 0x40);
        header(120, rw_flags, USER_IMAGE_BASE + 0x1000, 0x20, 0x3000);
        elf
    }

    #[test]
    fn a_well_formed_image_parses() {
        let bytes = image(6);
        let image = UserImage::parse(&bytes).unwrap();
        let segments: std::vec::Vec<_> = image.segments().collect();
        assert_eq!(segments.len(), 2);
        assert!(segments[0].executable && !segments[0].writable);
        assert_eq!(segments[1].end_page(), USER_IMAGE_BASE + 0x4000);
        assert_eq!(image.file_bytes(&segments[1]).len(), 0x20);
    }

    #[test]
    fn bad_images_are_refused_by_name() {
        assert_eq!(
            UserImage::parse(&image(7)).unwrap_err(),
            ElfError::WritableAndExecutable { index: 1 }
        );
        assert_eq!(
            UserImage::parse(b"\x7fELF").unwrap_err(),
            ElfError::Truncated
        );
        let mut bad = image(6);
        bad[4] = 1;
        assert_eq!(UserImage::parse(&bad).unwrap_err(), ElfError::NotX86_64Elf);
        let mut bad = image(6);
        bad[16] = 3;
        assert_eq!(
            UserImage::parse(&bad).unwrap_err(),
            ElfError::NotExecutable(3)
        );
        let mut bad = image(6);
        bad[120 + 32..120 + 40].copy_from_slice(&0x4000u64.to_le_bytes());
        assert_eq!(
            UserImage::parse(&bad).unwrap_err(),
            ElfError::BadFileRange { index: 1 }
        );
        let mut bad = image(6);
        bad[120 + 16..120 + 24].copy_from_slice(&0xffff_8000_0000_0000u64.to_le_bytes());
        assert_eq!(
            UserImage::parse(&bad).unwrap_err(),
            ElfError::SegmentOutOfRange { index: 1 }
        );
        let mut bad = image(6);
        bad[120 + 16..120 + 24].copy_from_slice(&USER_IMAGE_BASE.to_le_bytes());
        assert_eq!(
            UserImage::parse(&bad).unwrap_err(),
            ElfError::OverlappingSegments { index: 1 }
        );
        let mut bad = image(6);
        bad[24..32].copy_from_slice(&(USER_IMAGE_BASE + 0x1000).to_le_bytes());
        assert!(matches!(
            UserImage::parse(&bad).unwrap_err(),
            ElfError::EntryNotExecutable(_)
        ));
    }
}
