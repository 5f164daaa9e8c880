//! Function bounds from `.eh_frame`, for addresses no symbol covers: stripped binaries keep their
//! unwind tables, and each FDE covers one function (or one part of it, such as a `.cold` block).
//! Built on the first such address in a binary, never for binaries whose symbols cover
//! everything.

use gimli::{BaseAddresses, CieOrFde, EhFrame, RunTimeEndian, UnwindSection};
use object::{Object, ObjectSection};

/// The `[start, end)` SVMA ranges of a binary's FDEs, sorted.
#[derive(Debug, Default)]
pub(crate) struct FunctionBounds {
    ranges: Vec<(u64, u64)>,
}

impl FunctionBounds {
    /// Reads every FDE of `object`'s `.eh_frame` (none if it has no such section).
    pub(crate) fn build(object: &object::File<'_>) -> Self {
        let Some(section) = object.section_by_name(".eh_frame") else {
            return Self::default();
        };
        let Ok(data) = section.data() else {
            return Self::default();
        };
        let endian = if object.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let mut eh_frame = EhFrame::new(data, endian);
        eh_frame.set_address_size(if object.is_64() { 8 } else { 4 });
        let mut bases = BaseAddresses::default().set_eh_frame(section.address());
        if let Some(text) = object.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        if let Some(got) = object.section_by_name(".got") {
            bases = bases.set_got(got.address());
        }
        let mut ranges = Vec::new();
        let mut entries = eh_frame.entries(&bases);
        while let Ok(Some(entry)) = entries.next() {
            let CieOrFde::Fde(partial) = entry else {
                continue;
            };
            if let Ok(fde) = partial.parse(EhFrame::cie_from_offset) {
                let start = fde.initial_address();
                let end = start.saturating_add(fde.len());
                if start != 0 && start < end {
                    ranges.push((start, end));
                }
            }
        }
        ranges.sort_unstable();
        ranges.shrink_to_fit();
        FunctionBounds { ranges }
    }

    /// The range of the FDE covering `svma`.
    pub(crate) fn find(&self, svma: u64) -> Option<(u64, u64)> {
        let after = self.ranges.partition_point(|&(start, _)| start <= svma);
        let &(start, end) = self.ranges.get(after.checked_sub(1)?)?;
        (svma < end).then_some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_covering_range_only() {
        let bounds = FunctionBounds {
            ranges: vec![(0x1000, 0x1040), (0x1040, 0x1100), (0x2000, 0x2010)],
        };
        assert_eq!(bounds.find(0x1000), Some((0x1000, 0x1040)));
        assert_eq!(bounds.find(0x1050), Some((0x1040, 0x1100)));
        assert_eq!(bounds.find(0x1800), None);
        assert_eq!(bounds.find(0x10), None);
        assert_eq!(bounds.find(0x2010), None);
    }
}
