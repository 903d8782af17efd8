//! Loads the user image (libos + apps) into ring-3 pages and publishes the info page.
//!
//! Each `PT_LOAD` segment is copied into fresh frames mapped at its link address with the
//! permissions its flags give (R, RX or RW; W+X is refused by the parser). One copy of the code
//! serves every app.

use crate::mm::{self, MapError, UserAccess};
use alloc::vec::Vec;
use core::fmt;
use lite_abi::bundle::Bundle;
use lite_abi::elf::{ElfError, Segment, UserImage};
use lite_abi::layout::{
    AppInfo, AppSlot, INFO_MAGIC, INFO_PAGE_ADDR, SlotPlanner, info_bytes, info_header_bytes,
};
use lite_abi::net::ring::Geometry;

/// Why the user image could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    Elf(ElfError),
    Map(MapError),
    /// App `index` asks for a stack or heap the slot layout cannot hold.
    BadSlot {
        index: usize,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Elf(error) => write!(f, "{error}"),
            LoadError::Map(error) => write!(f, "{error}"),
            LoadError::BadSlot { index } => write!(f, "app {index} does not fit its slot"),
        }
    }
}

/// The loaded image: where to enter it, and each app's slot.
pub struct LoadedImage {
    pub entry: u64,
    pub slots: Vec<AppSlot>,
}

pub fn load(bundle: &Bundle<'_>, tsc_hz: u64) -> Result<LoadedImage, LoadError> {
    let image = UserImage::parse(bundle.elf()).map_err(LoadError::Elf)?;
    for segment in image.segments() {
        load_segment(&image, &segment).map_err(LoadError::Map)?;
    }
    // The header, then one record per app: only as many as the bundle has.
    let mut bytes = alloc::vec![0u8; info_header_bytes()];
    let header = [
        INFO_MAGIC,
        tsc_hz,
        crate::timer::rdtsc(),
        crate::devices::rtc::unix_time_ms().unwrap_or(0),
        bundle.app_count() as u64,
    ];
    for (index, word) in header.iter().enumerate() {
        bytes[index * 8..index * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    let mut planner = SlotPlanner::new();
    let mut slots = Vec::with_capacity(bundle.app_count());
    for (index, spec) in bundle.apps().enumerate() {
        let slot = planner
            .place(
                spec.stack_bytes,
                spec.heap_bytes,
                spec.net.map_or(0, |net| Geometry::of(&net).area_bytes()),
                spec.disk.map_or(0, |disk| disk.geometry.area_bytes()),
            )
            .ok_or(LoadError::BadSlot { index })?;
        let record = AppInfo {
            name: lite_abi::encode_name(spec.name).ok_or(LoadError::BadSlot { index })?,
            program: lite_abi::encode_name(spec.program).ok_or(LoadError::BadSlot { index })?,
            heap_base: slot.heap_base,
            heap_bytes: slot.heap_bytes,
            log_level: u64::from(spec.log_level),
            net_area: if spec.net.is_some() { slot.net_base } else { 0 },
            blk_area: if spec.disk.is_some() {
                slot.blk_base
            } else {
                0
            },
            blk_slots: spec.disk.map_or(0, |disk| disk.geometry.slots),
            blk_buffer_sectors: spec.disk.map_or(0, |disk| disk.geometry.buffer_sectors),
            blk_sectors: spec.disk.map_or(0, |disk| disk.sectors()),
        };
        bytes.extend_from_slice(&record.name);
        bytes.extend_from_slice(&record.program);
        for word in [
            record.heap_base,
            record.heap_bytes,
            record.log_level,
            record.net_area,
            record.blk_area,
        ] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&record.blk_slots.to_le_bytes());
        bytes.extend_from_slice(&record.blk_buffer_sectors.to_le_bytes());
        bytes.extend_from_slice(&record.blk_sectors.to_le_bytes());
        slots.push(slot);
    }
    mm::map_user(
        INFO_PAGE_ADDR,
        info_bytes(bundle.app_count()),
        UserAccess::ReadOnly,
        |page, contents| {
            let offset = (page - INFO_PAGE_ADDR) as usize;
            if offset < bytes.len() {
                let part = &bytes[offset..bytes.len().min(offset + 4096)];
                contents[..part.len()].copy_from_slice(part);
            }
        },
    )
    .map_err(LoadError::Map)?;
    Ok(LoadedImage {
        entry: image.entry(),
        slots,
    })
}

fn load_segment(image: &UserImage<'_>, segment: &Segment) -> Result<(), MapError> {
    let access = match (segment.writable, segment.executable) {
        (true, _) => UserAccess::ReadWrite,
        (false, true) => UserAccess::ReadExecute,
        (false, false) => UserAccess::ReadOnly,
    };
    let data = image.file_bytes(segment);
    let data_start = segment.vaddr;
    let data_end = segment.vaddr + data.len() as u64;
    let first = segment.first_page();
    mm::map_user(
        first,
        segment.end_page() - first,
        access,
        |page, contents| {
            let from = page.max(data_start);
            let to = (page + 4096).min(data_end);
            if from < to {
                let source = &data[(from - data_start) as usize..(to - data_start) as usize];
                contents[(from - page) as usize..(to - page) as usize].copy_from_slice(source);
            }
        },
    )
}
