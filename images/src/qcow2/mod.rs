//! A qcow2 reader: header, L1 and L2 tables, and the guest clusters they map, so that an image can be expanded
//! into a raw disk. Every offset and size read from the file is checked before use; a bad image is an error,
//! never a panic (the reader is property-tested on arbitrary bytes).
//!
//! Supported: qcow2 version 2 and 3, any cluster size qemu allows (512 B – 2 MiB), unallocated and
//! "all zeros" clusters (read as zeros), the dirty bit. Not supported, refused with [`Qcow2Error::Unsupported`]:
//! backing files, encryption, compressed clusters, external data files, extended L2 entries, and any other
//! incompatible feature bit. Snapshots are ignored (only the active L1 table is read).
//!
//! [`Qcow2Image`] reads an image with random access; [`stream::Qcow2Stream`] expands one in a single pass over
//! its bytes as they download, with the same checks.

use std::os::unix::fs::FileExt;

pub mod stream;

/// qcow2's magic number, `QFI\xfb`.
pub const QCOW2_MAGIC: u32 = 0x5146_49fb;
/// Host offset bits in L1 and L2 entries.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry flag: the cluster is compressed.
const L2_COMPRESSED: u64 = 1 << 62;
/// L2 entry flag (v3): the cluster reads as zeros.
const L2_ZERO: u64 = 1;
/// The largest L1 table kiln will read (entries): 32 MiB of table, far beyond any real disk.
const MAX_L1_ENTRIES: u64 = 4 << 20;

/// Why a qcow2 image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// The file could not be read.
    #[error("cannot read the qcow2 image at offset {offset}")]
    Io {
        /// Where the read started.
        offset: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not a qcow2 file.
    #[error("not a qcow2 image (magic {magic:#010x})")]
    NotQcow2 {
        /// The magic found.
        magic: u32,
    },
    /// A feature kiln does not implement.
    #[error("qcow2 image uses {feature}, which kiln does not support")]
    Unsupported {
        /// The feature.
        feature: String,
    },
    /// The image's structures are inconsistent.
    #[error("qcow2 image is corrupt: {detail}")]
    Corrupt {
        /// What is wrong, with the offending values.
        detail: String,
    },
}

pub(crate) fn corrupt(detail: impl Into<String>) -> Qcow2Error {
    Qcow2Error::Corrupt {
        detail: detail.into(),
    }
}

/// Random-access bytes: a file, or memory in tests.
pub trait ReadAt {
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    /// Total length.
    fn len(&self) -> std::io::Result<u64>;
    /// Whether there are no bytes.
    fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        (**self).len()
    }
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .filter(|end| *end <= <[u8]>::len(self))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..end]);
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
}

/// The header fields kiln uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Size of the guest disk.
    pub virtual_size: u64,
    /// Entries in the active L1 table.
    pub l1_size: u32,
    /// Where the L1 table starts.
    pub l1_table_offset: u64,
}

impl Qcow2Header {
    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
}

/// What one guest cluster holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Cluster<'a> {
    /// Reads as zeros (unallocated or the zero flag).
    Zero,
    /// These bytes (shorter than a cluster only at the end of the disk).
    Data(&'a [u8]),
}

/// An open qcow2 image.
#[derive(Debug)]
pub struct Qcow2Image<R> {
    source: R,
    header: Qcow2Header,
    file_len: u64,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

pub(crate) fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

impl Qcow2Header {
    /// Parses and checks the header at the start of a `file_len`-byte image; `raw` holds its first
    /// `min(104, file_len)` bytes. A streamed image of unknown length passes `u64::MAX` (the checks against the
    /// end of the file are then made when the stream ends).
    pub(crate) fn parse(raw: &[u8], file_len: u64) -> Result<Self, Qcow2Error> {
        if raw.len() < 72 {
            return Err(corrupt(format!(
                "file is {file_len} bytes, shorter than a qcow2 header"
            )));
        }
        let magic = be_u32(raw, 0);
        if magic != QCOW2_MAGIC {
            return Err(Qcow2Error::NotQcow2 { magic });
        }
        let version = be_u32(raw, 4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::Unsupported {
                feature: format!("version {version}"),
            });
        }
        if be_u64(raw, 8) != 0 {
            return Err(Qcow2Error::Unsupported {
                feature: "a backing file".into(),
            });
        }
        let cluster_bits = be_u32(raw, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(corrupt(format!(
                "cluster_bits {cluster_bits} is outside 9..=21"
            )));
        }
        let virtual_size = be_u64(raw, 24);
        let crypt_method = be_u32(raw, 32);
        if crypt_method != 0 {
            return Err(Qcow2Error::Unsupported {
                feature: format!("encryption (method {crypt_method})"),
            });
        }
        let l1_size = be_u32(raw, 36);
        let l1_table_offset = be_u64(raw, 40);
        if version == 3 {
            if raw.len() < 104 {
                return Err(corrupt("version 3 header is truncated"));
            }
            let incompatible = be_u64(raw, 72);
            // Bit 0 (dirty) only means refcounts may be stale; the L1/L2 mapping kiln reads is still valid.
            let known_bad = [
                (1u64 << 1, "the corrupt bit"),
                (1 << 2, "an external data file"),
                (1 << 3, "a non-zlib compression type"),
                (1 << 4, "extended L2 entries"),
            ];
            for (bit, feature) in known_bad {
                if incompatible & bit != 0 {
                    return Err(Qcow2Error::Unsupported {
                        feature: feature.into(),
                    });
                }
            }
            let unknown = incompatible & !0b1_1111;
            if unknown != 0 {
                return Err(Qcow2Error::Unsupported {
                    feature: format!("incompatible feature bits {unknown:#x}"),
                });
            }
        }
        let header = Qcow2Header {
            version,
            cluster_bits,
            virtual_size,
            l1_size,
            l1_table_offset,
        };
        let cluster_size = header.cluster_size();
        let needed_l1 = header.l1_entries_used();
        if u64::from(l1_size) < needed_l1 {
            return Err(corrupt(format!(
                "L1 table has {l1_size} entries, a {virtual_size}-byte disk needs {needed_l1}"
            )));
        }
        if u64::from(l1_size) > MAX_L1_ENTRIES {
            return Err(corrupt(format!(
                "L1 table of {l1_size} entries is implausibly large"
            )));
        }
        if l1_size > 0 {
            if !l1_table_offset.is_multiple_of(cluster_size) {
                return Err(corrupt(format!(
                    "L1 table offset {l1_table_offset} is not cluster-aligned"
                )));
            }
            header.check_l1_fits(file_len)?;
        }
        Ok(header)
    }

    /// Guest clusters of the disk.
    pub fn guest_clusters(&self) -> u64 {
        self.virtual_size.div_ceil(self.cluster_size())
    }

    /// L1 entries that map the disk (the table may hold more).
    pub fn l1_entries_used(&self) -> u64 {
        self.guest_clusters().div_ceil(self.cluster_size() / 8)
    }

    /// The whole L1 table must lie inside the file.
    pub(crate) fn check_l1_fits(&self, file_len: u64) -> Result<(), Qcow2Error> {
        let end = self
            .l1_table_offset
            .checked_add(u64::from(self.l1_size) * 8);
        if end.is_none_or(|end| end > file_len) {
            return Err(corrupt(format!(
                "L1 table at {} ({} entries) runs past the end of the {file_len}-byte file",
                self.l1_table_offset, self.l1_size
            )));
        }
        Ok(())
    }

    /// The cluster-aligned host offset in table entry `entry` (`what` entry `index`), which must lie inside a
    /// `file_len`-byte file.
    pub(crate) fn table_offset(
        &self,
        entry: u64,
        what: &str,
        index: u64,
        file_len: u64,
    ) -> Result<u64, Qcow2Error> {
        let offset = entry & OFFSET_MASK;
        let cluster_size = self.cluster_size();
        if !offset.is_multiple_of(cluster_size) {
            return Err(corrupt(format!(
                "{what} entry {index} points at {offset}, not cluster-aligned"
            )));
        }
        if offset
            .checked_add(cluster_size)
            .is_none_or(|end| end > file_len)
        {
            return Err(past_end(what, index, offset, file_len));
        }
        Ok(offset)
    }

    /// Decodes the L2 entry for guest cluster `guest_cluster`.
    pub(crate) fn l2_entry(
        &self,
        entry: u64,
        guest_cluster: u64,
        file_len: u64,
    ) -> Result<L2Entry, Qcow2Error> {
        if entry & L2_COMPRESSED != 0 {
            return Err(Qcow2Error::Unsupported {
                feature: format!(
                    "compressed clusters (guest offset {})",
                    guest_cluster * self.cluster_size()
                ),
            });
        }
        if (self.version == 3 && entry & L2_ZERO != 0) || entry & OFFSET_MASK == 0 {
            return Ok(L2Entry::Zero);
        }
        self.table_offset(entry, "L2", guest_cluster, file_len)
            .map(L2Entry::At)
    }
}

/// A table entry that points past the end of the file.
pub(crate) fn past_end(what: &str, index: u64, offset: u64, file_len: u64) -> Qcow2Error {
    corrupt(format!(
        "{what} entry {index} points at {offset}, past the end of the {file_len}-byte file"
    ))
}

/// What an L2 entry says about its guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L2Entry {
    /// Reads as zeros.
    Zero,
    /// Stored at this host offset (checked: cluster-aligned, inside a `file_len`-byte file).
    At(u64),
}

impl<R: ReadAt> Qcow2Image<R> {
    /// Reads and checks the header.
    pub fn open(source: R) -> Result<Self, Qcow2Error> {
        let file_len = source
            .len()
            .map_err(|source| Qcow2Error::Io { offset: 0, source })?;
        let mut raw = [0u8; 104];
        let header_len = file_len.min(104) as usize;
        source
            .read_exact_at(&mut raw[..header_len], 0)
            .map_err(|source| Qcow2Error::Io { offset: 0, source })?;
        let header = Qcow2Header::parse(&raw[..header_len], file_len)?;
        Ok(Self {
            source,
            header,
            file_len,
        })
    }

    /// The header.
    pub fn header(&self) -> &Qcow2Header {
        &self.header
    }

    /// Size of the guest disk.
    pub fn virtual_size(&self) -> u64 {
        self.header.virtual_size
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Qcow2Error> {
        self.source
            .read_exact_at(buf, offset)
            .map_err(|source| Qcow2Error::Io { offset, source })
    }

    /// Calls `visit(guest_offset, cluster)` for every guest cluster in order, up to the virtual size.
    /// Stops at the first error, from the image or from `visit`.
    pub fn for_each_cluster<E>(
        &self,
        mut visit: impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<Qcow2Error>,
    {
        let cluster_size = self.header.cluster_size();
        let l2_entries = cluster_size / 8;
        let virtual_size = self.header.virtual_size;
        let clusters = self.header.guest_clusters();
        let l1_used = self.header.l1_entries_used();
        let mut table = vec![0u8; cluster_size as usize];
        let mut data = vec![0u8; cluster_size as usize];
        let mut l1 = vec![0u8; (l1_used * 8) as usize];
        self.read(&mut l1, self.header.l1_table_offset)?;
        for l1_index in 0..l1_used {
            let l1_entry = be_u64(&l1, (l1_index * 8) as usize);
            let first_cluster = l1_index * l2_entries;
            let in_this_table = l2_entries.min(clusters - first_cluster);
            if l1_entry & OFFSET_MASK == 0 {
                for i in 0..in_this_table {
                    visit((first_cluster + i) * cluster_size, Cluster::Zero)?;
                }
                continue;
            }
            let l2_offset = self
                .header
                .table_offset(l1_entry, "L1", l1_index, self.file_len)?;
            self.read(&mut table, l2_offset)?;
            for i in 0..in_this_table {
                let guest = (first_cluster + i) * cluster_size;
                let l2_entry = be_u64(&table, (i * 8) as usize);
                let host = match self
                    .header
                    .l2_entry(l2_entry, first_cluster + i, self.file_len)?
                {
                    L2Entry::Zero => {
                        visit(guest, Cluster::Zero)?;
                        continue;
                    }
                    L2Entry::At(host) => host,
                };
                let len = cluster_size.min(virtual_size - guest) as usize;
                self.read(&mut data[..len], host)?;
                visit(guest, Cluster::Data(&data[..len]))?;
            }
        }
        Ok(())
    }
}
