//! Names (org, item, location and lot ids) ↔ dense `u32` ids, compactly: every name is stored
//! once, in one text arena, and the lookup table holds only a 64-bit keyed hash (SipHash with a
//! random key, so tenants cannot aim collisions) and the id — 12 bytes a slot instead of a
//! boxed string per name.
//!
//! Exact despite hashing: a hit is confirmed against the arena, and a name whose hash is
//! already taken by another name goes to a small exact map (`collisions`), which `get` also
//! consults. Ids start at 1 (0 is the NULL lot).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

use super::{malloc_chunk, table_bytes, Id};

/// A name's keyed hash, as two halves so a table slot needs 4-byte alignment only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HashKey([u32; 2]);

impl Hash for HashKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.0[0]) | (u64::from(self.0[1]) << 32));
    }
}

/// The key already is a keyed hash: the table uses it as is.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
pub(super) struct Interner {
    keys: RandomState,
    /// Applied to every hash; tests set it to 0 to make every name collide.
    mask: u64,
    by_hash: HashMap<HashKey, Id, BuildHasherDefault<PassThrough>>,
    collisions: HashMap<Box<str>, Id>,
    /// All names, back to back; name `id` is `text[ends[id - 2]..ends[id - 1]]`.
    text: String,
    ends: Vec<usize>,
}

impl Default for Interner {
    fn default() -> Interner {
        Interner {
            keys: RandomState::new(),
            mask: u64::MAX,
            by_hash: HashMap::default(),
            collisions: HashMap::new(),
            text: String::new(),
            ends: Vec::new(),
        }
    }
}

impl Interner {
    fn key(&self, s: &str) -> HashKey {
        let h = self.keys.hash_one(s) & self.mask;
        HashKey([h as u32, (h >> 32) as u32])
    }

    /// The name of `id` (`""` for 0 or an unknown id).
    pub(super) fn name(&self, id: Id) -> &str {
        let i = id as usize;
        if i == 0 || i > self.ends.len() {
            return "";
        }
        let start = if i == 1 { 0 } else { self.ends[i - 2] };
        &self.text[start..self.ends[i - 1]]
    }

    pub(super) fn get(&self, s: &str) -> Option<Id> {
        match self.by_hash.get(&self.key(s)) {
            Some(&id) if self.name(id) == s => Some(id),
            Some(_) => self.collisions.get(s).copied(),
            None => None,
        }
    }

    pub(super) fn intern(&mut self, s: &str) -> Id {
        let key = self.key(s);
        match self.by_hash.get(&key) {
            Some(&id) if self.name(id) == s => return id,
            Some(_) => {
                if let Some(&id) = self.collisions.get(s) {
                    return id;
                }
            }
            None => {}
        }
        self.text.push_str(s);
        self.ends.push(self.text.len());
        // 4 billion distinct names would need far more memory than any host has.
        let id = Id::try_from(self.ends.len()).unwrap_or(Id::MAX);
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_hash.entry(key) {
            e.insert(id);
        } else {
            self.collisions.insert(s.into(), id);
        }
        id
    }

    pub(super) fn clear(&mut self) {
        self.by_hash.clear();
        self.collisions.clear();
        self.text.clear();
        self.ends.clear();
    }

    /// Gives back the arena's and the offsets' spare capacity (after a load).
    pub(super) fn shrink(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// Heap bytes: arena and offsets at capacity, both tables, boxed colliding names.
    pub(super) fn bytes(&self) -> usize {
        use std::mem::size_of;
        let boxed: usize = self.collisions.keys().map(|n| malloc_chunk(n.len())).sum();
        self.text.capacity()
            + self.ends.capacity() * size_of::<usize>()
            + table_bytes(self.by_hash.capacity(), size_of::<(HashKey, Id)>())
            + table_bytes(self.collisions.capacity(), size_of::<(Box<str>, Id)>())
            + boxed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mut i: Interner) {
        let names = ["org_a", "", "i1", "l1", "LOT-7", "i1 ", "I1", "é"];
        let ids: Vec<Id> = names.iter().map(|n| i.intern(n)).collect();
        assert_eq!(ids, (1..=names.len() as Id).collect::<Vec<_>>());
        for (n, &id) in names.iter().zip(&ids) {
            assert_eq!(i.intern(n), id, "{n:?} re-interned");
            assert_eq!(i.get(n), Some(id), "{n:?}");
            assert_eq!(i.name(id), *n);
        }
        assert_eq!(i.get("missing"), None);
        assert_eq!(i.get("i"), None);
        assert_eq!(i.name(0), "");
        assert_eq!(i.name(99), "");
        assert!(i.bytes() > 0);
        i.clear();
        assert_eq!(i.get("org_a"), None);
        assert_eq!(i.intern("x"), 1);
    }

    #[test]
    fn names_and_ids_round_trip() {
        check(Interner::default());
    }

    /// Every name hashing alike: all but the first live in `collisions`, still exact.
    #[test]
    fn colliding_hashes_stay_exact() {
        let i = Interner {
            mask: 0,
            ..Interner::default()
        };
        check(i);
        let mut i = Interner {
            mask: 0,
            ..Interner::default()
        };
        i.intern("a");
        i.intern("b");
        assert_eq!(i.by_hash.len(), 1);
        assert_eq!(i.collisions.len(), 1);
    }
}
