//! The unique stacks of a recording, as they arrive: each distinct frame key stored once with a
//! 4-byte id, each distinct stack once as a run of those ids in one arena.
//!
//! A system-wide recording of a build keeps ~57,000 unique (thread, stack) pairs of ~20 frames
//! after 30 s: as boxed slices of 16-byte frame keys they took 18 MB and grew for the whole
//! recording; as ids, a quarter of that plus the frame table.

use std::hash::{BuildHasher, Hash, Hasher};

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
    /// Stack ids, by the hash of their frame keys ([`hash_keys`]).
    stack_ids: HashTable<u32>,
}

impl StackTable {
    /// The id of stack `frames` (as the collector builds them: leaf first, thread last), and
    /// whether it was seen for the first time. A stack seen before costs one hash over its keys
    /// and a comparison; only a new stack looks its frames up one by one.
    pub(super) fn intern(&mut self, frames: &[FrameKey]) -> (u32, bool) {
        let hash = hash_keys(frames.iter());
        let (arena, starts, keys) = (&self.arena, &self.starts, &self.frames);
        let same = |id: &u32| {
            let stack = stack(arena, starts, *id);
            stack.len() == frames.len()
                && stack
                    .iter()
                    .zip(frames)
                    .all(|(&f, key)| keys[f as usize] == *key)
        };
        if let Some(&id) = self.stack_ids.find(hash, same) {
            return (id, false);
        }
        let id = self.starts.len() as u32;
        self.starts.push(self.arena.len() as u32);
        for key in frames {
            let frame = self.frame_id(key);
            self.arena.push(frame);
        }
        let (arena, starts, keys) = (&self.arena, &self.starts, &self.frames);
        self.stack_ids.insert_unique(hash, id, |&id| {
            hash_keys(stack(arena, starts, id).iter().map(|&f| &keys[f as usize]))
        });
        (id, true)
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
    }
}

/// The hash of a stack of frame keys, the same whether they come from a sample or from the
/// table.
fn hash_keys<'a>(keys: impl Iterator<Item = &'a FrameKey>) -> u64 {
    let mut hasher = FxBuildHasher.build_hasher();
    for key in keys {
        key.hash(&mut hasher);
    }
    hasher.finish()
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
