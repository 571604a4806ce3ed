//! Expanding a qcow2 image while it downloads, in one pass over the bytes in file order.
//!
//! qemu-img lays an image out as header, refcount table and blocks, L1 table, then each L2 table ahead of the
//! data clusters it maps. Reading in that order, every data cluster's guest offset is known when its bytes
//! arrive, so it goes straight to the disk. Clusters whose role is not known yet when they arrive (the header,
//! refcounts, and in other layouts tables or data that come before the table that maps them) are kept in a
//! sparse spool file at their own offsets and read back when a table claims them. An image whose tables all
//! follow its data therefore spools everything, as a spool-then-expand writer would; qemu-img's output spools
//! only its few metadata clusters.
//!
//! The same checks as [`super::Qcow2Image`] apply, and the same error texts; checks against the end of the
//! file are made when the stream ends if its length was not known. One layout only the random-access reader
//! can expand is refused with [`Qcow2Error::Unsupported`]: a data cluster that a table maps again after it was
//! already written to the disk (clusters shared between guest offsets, as internal snapshots leave them).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{Cluster, L2Entry, Qcow2Error, Qcow2Header, be_u64, past_end};

/// Header bytes needed before the cluster size is known.
const HEADER_BYTES: usize = 104;

/// A growable bit set over cluster numbers.
#[derive(Debug, Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, index: u64) {
        let word = (index / 64) as usize;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (index % 64);
    }

    fn get(&self, index: u64) -> bool {
        self.0
            .get((index / 64) as usize)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }
}

/// A fully expanded streamed image.
#[derive(Debug)]
pub struct Qcow2Finished {
    header: Qcow2Header,
    with_data: Bits,
    spooled_bytes: u64,
}

impl Qcow2Finished {
    /// The image's header.
    pub fn header(&self) -> &Qcow2Header {
        &self.header
    }

    /// Bytes that went through the spool file instead of straight to the disk (metadata, and data that arrived
    /// before its table).
    pub fn spooled_bytes(&self) -> u64 {
        self.spooled_bytes
    }

    /// Guest offset and length of every cluster that holds no data (reads as zeros), in order.
    pub fn zero_clusters(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let cluster_size = self.header.cluster_size();
        let virtual_size = self.header.virtual_size;
        (0..self.header.guest_clusters())
            .filter(|cluster| !self.with_data.get(*cluster))
            .map(move |cluster| {
                let guest = cluster * cluster_size;
                (guest, cluster_size.min(virtual_size - guest))
            })
    }
}

/// A qcow2 image being expanded as its bytes arrive. Feed it with [`Qcow2Stream::push`], end with
/// [`Qcow2Stream::finish`]; both hand every data cluster to `visit(guest_offset, Cluster::Data(bytes))`, in file
/// order (not guest order); the finished image then lists the clusters that read as zeros.
#[derive(Debug)]
pub struct Qcow2Stream {
    spool: File,
    /// The file's length when known in advance (a `Content-Length`), for the header's checks.
    expected_len: Option<u64>,
    head: Vec<u8>,
    header: Option<Qcow2Header>,
    /// Bytes taken in so far.
    received: u64,
    /// The host cluster being filled.
    partial: Vec<u8>,
    /// Host offset of `partial`.
    partial_at: u64,
    l1: Vec<u8>,
    l1_done: bool,
    /// L2 tables not arrived yet: host offset → L1 indexes pointing at it.
    l2_waiting: BTreeMap<u64, Vec<u64>>,
    /// Data clusters not arrived yet: host offset → guest cluster numbers mapped to it.
    data_waiting: BTreeMap<u64, Vec<u64>>,
    /// Host clusters kept in the spool.
    spooled: Bits,
    /// Guest clusters handed over as data.
    with_data: Bits,
    /// Bytes written to the spool.
    spooled_bytes: u64,
}

impl Qcow2Stream {
    /// A stream spooling to `spool` (an empty, writable file; sparse where clusters went to the disk), for an
    /// image of `expected_len` bytes when known.
    pub fn new(spool: File, expected_len: Option<u64>) -> Self {
        Self {
            spool,
            expected_len,
            head: Vec::with_capacity(HEADER_BYTES),
            header: None,
            received: 0,
            partial: Vec::new(),
            partial_at: 0,
            l1: Vec::new(),
            l1_done: false,
            l2_waiting: BTreeMap::new(),
            data_waiting: BTreeMap::new(),
            spooled: Bits::default(),
            with_data: Bits::default(),
            spooled_bytes: 0,
        }
    }

    /// The header, once its bytes have arrived.
    pub fn header(&self) -> Option<&Qcow2Header> {
        self.header.as_ref()
    }

    /// Takes the next bytes of the file.
    pub fn push<E: From<Qcow2Error>>(
        &mut self,
        mut bytes: &[u8],
        visit: &mut impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.header.is_none() {
            let take = bytes.len().min(HEADER_BYTES - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.head.len() < HEADER_BYTES {
                return Ok(());
            }
            let file_len = self.expected_len.unwrap_or(u64::MAX);
            self.start(Qcow2Header::parse(&self.head, file_len)?);
            let head = std::mem::take(&mut self.head);
            self.take(&head, visit)?;
        }
        self.take(bytes, visit)
    }

    /// Ends the stream: hands over what the last bytes complete and checks that every table and data cluster
    /// the image maps arrived. The result names the guest clusters that hold no data (they read as zeros).
    pub fn finish<E: From<Qcow2Error>>(
        mut self,
        visit: &mut impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<Qcow2Finished, E> {
        let file_len = self.received;
        if self.header.is_none() {
            // Shorter than a v3 header: parse what there is against the real length.
            self.start(Qcow2Header::parse(&self.head, file_len)?);
            let head = std::mem::take(&mut self.head);
            self.take(&head, visit)?;
        }
        let Some(header) = self.header else {
            unreachable!("started above");
        };
        if !self.partial.is_empty() {
            let (at, partial) = (self.partial_at, std::mem::take(&mut self.partial));
            self.cluster(at, &partial, visit)?;
        }
        if header.l1_size > 0 {
            header.check_l1_fits(file_len)?;
        }
        if let Some((offset, indexes)) = self.l2_waiting.iter().min_by_key(|(_, i)| i[0]) {
            return Err(past_end("L1", indexes[0], *offset, file_len).into());
        }
        if let Some((offset, guests)) = self.data_waiting.iter().min_by_key(|(_, g)| g[0]) {
            return Err(past_end("L2", guests[0], *offset, file_len).into());
        }
        Ok(Qcow2Finished {
            header,
            with_data: self.with_data,
            spooled_bytes: self.spooled_bytes,
        })
    }

    fn start(&mut self, header: Qcow2Header) {
        self.l1 = vec![0; (header.l1_entries_used() * 8) as usize];
        self.l1_done = self.l1.is_empty();
        self.header = Some(header);
    }

    /// Cuts `bytes` into host clusters.
    fn take<E: From<Qcow2Error>>(
        &mut self,
        mut bytes: &[u8],
        visit: &mut impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(header) = self.header else {
            return Ok(());
        };
        let cluster_size = header.cluster_size() as usize;
        while !bytes.is_empty() {
            if self.partial.is_empty() && bytes.len() >= cluster_size {
                // A whole cluster straight from the input.
                let at = self.received;
                self.received += cluster_size as u64;
                self.cluster(at, &bytes[..cluster_size], visit)?;
                bytes = &bytes[cluster_size..];
                continue;
            }
            if self.partial.is_empty() {
                self.partial_at = self.received;
            }
            let take = bytes.len().min(cluster_size - self.partial.len());
            self.partial.extend_from_slice(&bytes[..take]);
            self.received += take as u64;
            bytes = &bytes[take..];
            if self.partial.len() == cluster_size {
                let (at, partial) = (self.partial_at, std::mem::take(&mut self.partial));
                self.cluster(at, &partial, visit)?;
            }
        }
        Ok(())
    }

    /// One host cluster at `at` (shorter than a cluster only at the end of the file).
    fn cluster<E: From<Qcow2Error>>(
        &mut self,
        at: u64,
        bytes: &[u8],
        visit: &mut impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(header) = self.header else {
            return Ok(());
        };
        let cluster_size = header.cluster_size();
        let whole = bytes.len() as u64 == cluster_size;
        // A short last cluster cannot be data: what waits for it is reported by `finish`.
        let waiting_data = if whole {
            self.data_waiting.remove(&at)
        } else {
            None
        };
        match &waiting_data {
            Some(guests) => {
                for &guest_cluster in guests {
                    self.hand_over(guest_cluster, bytes, visit)?;
                }
            }
            None => {
                self.spool
                    .write_all_at(bytes, at)
                    .map_err(|source| Qcow2Error::Io { offset: at, source })?;
                self.spooled.set(at / cluster_size);
                self.spooled_bytes += bytes.len() as u64;
            }
        }
        let l1_start = header.l1_table_offset;
        let l1_end = l1_start + self.l1.len() as u64;
        if !self.l1_done && at < l1_end && at + bytes.len() as u64 > l1_start {
            let from = at.max(l1_start);
            let to = (at + bytes.len() as u64).min(l1_end);
            self.l1[(from - l1_start) as usize..(to - l1_start) as usize]
                .copy_from_slice(&bytes[(from - at) as usize..(to - at) as usize]);
            if to == l1_end {
                self.l1_done = true;
                self.read_l1(visit)?;
            }
        }
        if whole && let Some(indexes) = self.l2_waiting.remove(&at) {
            for l1_index in indexes {
                self.read_l2(l1_index, bytes, visit)?;
            }
        }
        Ok(())
    }

    /// The L1 table is complete: L2 tables that already arrived are read now, the others when they arrive.
    fn read_l1<E: From<Qcow2Error>>(
        &mut self,
        visit: &mut impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(header) = self.header else {
            return Ok(());
        };
        let file_len = self.expected_len.unwrap_or(u64::MAX);
        let mut table = vec![0u8; header.cluster_size() as usize];
        for l1_index in 0..header.l1_entries_used() {
            let entry = be_u64(&self.l1, (l1_index * 8) as usize);
            if entry & super::OFFSET_MASK == 0 {
                continue;
            }
            let offset = header.table_offset(entry, "L1", l1_index, file_len)?;
            if offset >= self.received {
                self.l2_waiting.entry(offset).or_default().push(l1_index);
                continue;
            }
            self.read_back(offset, &mut table, "L1", l1_index)?;
            self.read_l2(l1_index, &table, visit)?;
        }
        Ok(())
    }

    /// Reads the L2 table for `l1_index`: data clusters that already arrived are handed over from the spool
    /// now, the others when they arrive.
    fn read_l2<E: From<Qcow2Error>>(
        &mut self,
        l1_index: u64,
        table: &[u8],
        visit: &mut impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(header) = self.header else {
            return Ok(());
        };
        let file_len = self.expected_len.unwrap_or(u64::MAX);
        let l2_entries = header.cluster_size() / 8;
        let first = l1_index * l2_entries;
        let in_table = l2_entries.min(header.guest_clusters() - first);
        let mut data = vec![0u8; header.cluster_size() as usize];
        for i in 0..in_table {
            let guest_cluster = first + i;
            let entry = be_u64(table, (i * 8) as usize);
            let L2Entry::At(host) = header.l2_entry(entry, guest_cluster, file_len)? else {
                continue;
            };
            if host >= self.received {
                self.data_waiting
                    .entry(host)
                    .or_default()
                    .push(guest_cluster);
                continue;
            }
            self.read_back(host, &mut data, "L2", guest_cluster)?;
            self.hand_over(guest_cluster, &data, visit)?;
        }
        Ok(())
    }

    /// A cluster that already arrived (the one `what` entry `index` points at), from the spool.
    fn read_back(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &str,
        index: u64,
    ) -> Result<(), Qcow2Error> {
        let cluster_size = buf.len() as u64;
        if offset + cluster_size > self.received {
            // Only the file's short last cluster: the stream has ended.
            return Err(past_end(what, index, offset, self.received));
        }
        if !self.spooled.get(offset / cluster_size) {
            return Err(Qcow2Error::Unsupported {
                feature: format!(
                    "a table that maps host cluster {offset} after it was written to the disk \
                     (shared clusters, e.g. from internal snapshots); kiln streams qcow2 in one pass"
                ),
            });
        }
        self.spool
            .read_exact_at(buf, offset)
            .map_err(|source| Qcow2Error::Io { offset, source })
    }

    fn hand_over<E: From<Qcow2Error>>(
        &mut self,
        guest_cluster: u64,
        bytes: &[u8],
        visit: &mut impl FnMut(u64, Cluster<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(header) = self.header else {
            return Ok(());
        };
        let guest = guest_cluster * header.cluster_size();
        let len = header.cluster_size().min(header.virtual_size - guest) as usize;
        self.with_data.set(guest_cluster);
        visit(guest, Cluster::Data(&bytes[..len]))
    }
}
