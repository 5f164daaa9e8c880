//! The unique stacks of a recording, as they arrive: each distinct frame key stored once with a
//! 4-byte id, each distinct stack once as a run of those ids in one arena.
//!
//! A system-wide recording of a build keeps ~57,000 unique (thread, stack) pairs of ~20 frames
//! after 30 s: as boxed slices of 16-byte frame keys they took 18 MB and grew for the whole
//! recording; as ids, a quarter of that plus the frame table.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::sample::FrameKey;

/// Interned frame keys and stacks of them; ids are dense, in order of first appearance.
#[derive(Default)]
pub(super) struct StackTable {
    /// Frame keys by id.
    frames: Vec<FrameKey>,
    /// Ids into `frames`, by the hash of the key.
    frame_ids: HashTable<u32>,
    /// Every stack's frame ids, one stack after the other.
    arena: Vec<u32>,
    /// Where each stack is in `arena`: start, by stack id (its end is the next one's start).
    starts: Vec<u32>,
    /// Stack ids, by the hash of their frame ids.
    stack_ids: HashTable<u32>,
    /// The frame ids of the stack being looked up.
    scratch: Vec<u32>,
}

impl StackTable {
    /// The id of stack `frames` (as the collector builds them: leaf first, thread last), and
    /// whether it was seen for the first time.
    pub(super) fn intern(&mut self, frames: &[FrameKey]) -> (u32, bool) {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend(frames.iter().map(|key| self.frame_id(key)));
        let hash = FxBuildHasher.hash_one(&ids[..]);
        let (arena, starts) = (&self.arena, &self.starts);
        let found = self
            .stack_ids
            .find(hash, |&id| stack(arena, starts, id) == &ids[..])
            .copied();
        let result = match found {
            Some(id) => (id, false),
            None => {
                let id = self.starts.len() as u32;
                self.starts.push(self.arena.len() as u32);
                self.arena.extend_from_slice(&ids);
                let (arena, starts) = (&self.arena, &self.starts);
                self.stack_ids.insert_unique(hash, id, |&id| {
                    FxBuildHasher.hash_one(stack(arena, starts, id))
                });
                (id, true)
            }
        };
        self.scratch = ids;
        result
    }

    /// The id of `key`, added if new.
    fn frame_id(&mut self, key: &FrameKey) -> u32 {
        let hash = FxBuildHasher.hash_one(key);
        let frames = &self.frames;
        if let Some(&id) = self.frame_ids.find(hash, |&id| frames[id as usize] == *key) {
            return id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(*key);
        let frames = &self.frames;
        self.frame_ids
            .insert_unique(hash, id, |&id| FxBuildHasher.hash_one(frames[id as usize]));
        id
    }

    /// Every distinct frame key, by id.
    pub(super) fn frames(&self) -> &[FrameKey] {
        &self.frames
    }

    /// How many distinct stacks there are.
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// The frame ids of stack `id` (leaf first, thread last).
    pub(super) fn stack(&self, id: u32) -> &[u32] {
        stack(&self.arena, &self.starts, id)
    }

    /// Lets go of the hash tables once no more stacks come (the profile is being built).
    pub(super) fn seal(&mut self) {
        self.frame_ids = HashTable::new();
        self.stack_ids = HashTable::new();
        self.scratch = Vec::new();
    }
}

/// Stack `id`'s frame ids in `arena`.
fn stack<'a>(arena: &'a [u32], starts: &[u32], id: u32) -> &'a [u32] {
    let start = starts[id as usize] as usize;
    let end = (starts.get(id as usize + 1)).map_or(arena.len(), |&end| end as usize);
    &arena[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_stacks_share_an_id_and_frames_are_stored_once() {
        let mut table = StackTable::default();
        let a = [
            FrameKey::Kernel(1),
            FrameKey::Kernel(2),
            FrameKey::Thread(0),
        ];
        let b = [FrameKey::Kernel(2), FrameKey::Thread(0)];
        let c = [
            FrameKey::Kernel(1),
            FrameKey::Kernel(2),
            FrameKey::Thread(1),
        ];
        assert_eq!(table.intern(&a), (0, true));
        assert_eq!(table.intern(&b), (1, true));
        assert_eq!(table.intern(&a), (0, false));
        assert_eq!(table.intern(&c), (2, true));
        assert_eq!(table.intern(&b), (1, false));
        assert_eq!(table.len(), 3);
        assert_eq!(table.frames().len(), 4);
        let keys = |id| -> Vec<FrameKey> {
            (table.stack(id).iter())
                .map(|&f| table.frames()[f as usize])
                .collect()
        };
        assert_eq!(keys(0), a);
        assert_eq!(keys(1), b);
        assert_eq!(keys(2), c);
        // Enough stacks for the tables to grow (and rehash) several times.
        for i in 0..5000u64 {
            let s = [
                FrameKey::Kernel(i % 97),
                FrameKey::Kernel(i),
                FrameKey::Thread(0),
            ];
            let (id, new) = table.intern(&s);
            assert!(new);
            assert_eq!(table.intern(&s), (id, false));
        }
        assert_eq!(table.intern(&c), (2, false));
    }
}
