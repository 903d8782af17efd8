//! Power cuts at every point of recorded workloads. A recording device logs every write and
//! flush; for each point of the history the test builds the disk states a cut there could
//! leave (every flushed epoch applied; of the last, unflushed epoch every subset of its
//! writes, and each write torn at 512-byte sector boundaries, alone or with the others),
//! mounts each (it must mount, with no repair step), and checks that the volume holds exactly
//! the state of the last commit that returned, or of the commit in flight at the cut. Then it
//! writes, syncs and remounts once more, to show the volume goes on working after the cut.

use super::*;
use std::collections::BTreeSet;

type Blocks = BTreeMap<u64, StdArc<Vec<u8>>>;

#[derive(Debug, Clone)]
enum Event {
    Write { first: u64, data: StdArc<Vec<u8>> },
    Flush,
    StepStart(usize),
    StepEnd(usize),
}

struct Recording {
    image: SparseDisk,
    events: Vec<Event>,
    /// Blocks written since the last flush: the design never writes one twice in an epoch
    /// (the device could reorder the two), and this checks it.
    epoch: BTreeSet<u64>,
}

#[derive(Clone)]
struct Recorder {
    inner: StdArc<StdMutex<Recording>>,
    block_count: u64,
}

impl Recorder {
    fn new(block_count: u64) -> Recorder {
        Recorder {
            inner: StdArc::new(StdMutex::new(Recording {
                image: SparseDisk::new(block_count),
                events: Vec::new(),
                epoch: BTreeSet::new(),
            })),
            block_count,
        }
    }

    fn mark(&self, event: Event) {
        self.inner.lock().unwrap().events.push(event);
    }
}

impl BlockDevice for Recorder {
    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read(&mut self, first: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.inner.lock().unwrap().image.read(first, buf)
    }

    fn write(&mut self, first: u64, data: &[u8]) -> Result<(), DeviceError> {
        let mut recording = self.inner.lock().unwrap();
        for block in first..first + (data.len() / BLOCK_BYTES) as u64 {
            assert!(
                recording.epoch.insert(block),
                "block {block} written twice between flushes"
            );
        }
        recording.image.write(first, data)?;
        recording.events.push(Event::Write {
            first,
            data: StdArc::new(data.to_vec()),
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        let mut recording = self.inner.lock().unwrap();
        recording.epoch.clear();
        recording.events.push(Event::Flush);
        Ok(())
    }
}

/// Applies sectors `sectors` of the write of `data` at block `first` to `blocks`.
fn apply_sectors(blocks: &mut Blocks, first: u64, data: &[u8], sectors: core::ops::Range<usize>) {
    let per_block = BLOCK_BYTES / SECTOR_BYTES;
    for sector in sectors {
        let block = first + (sector / per_block) as u64;
        let entry = blocks
            .entry(block)
            .or_insert_with(|| StdArc::new(vec![0; BLOCK_BYTES]));
        let within = sector % per_block * SECTOR_BYTES;
        let offset = sector * SECTOR_BYTES;
        StdArc::make_mut(entry)[within..within + SECTOR_BYTES]
            .copy_from_slice(&data[offset..offset + SECTOR_BYTES]);
    }
}

fn apply_whole(blocks: &mut Blocks, first: u64, data: &[u8]) {
    for (i, chunk) in data.chunks(BLOCK_BYTES).enumerate() {
        blocks.insert(first + i as u64, StdArc::new(chunk.to_vec()));
    }
}

/// Sector counts to tear a write of `sectors` sectors after.
fn tear_points(sectors: usize) -> Vec<usize> {
    if sectors <= 16 {
        return (1..sectors).collect();
    }
    let mut points: Vec<usize> = (1..8).chain(sectors - 8..sectors).collect();
    points.extend([sectors / 3, sectors / 2, sectors / 2 + 1, 2 * sectors / 3]);
    points
}

/// The disk states a cut could leave: `durable` plus parts of the unflushed `pending` writes.
fn crash_states(
    durable: &Blocks,
    pending: &[(u64, StdArc<Vec<u8>>)],
    seed: &mut u64,
) -> Vec<Blocks> {
    let n = pending.len();
    let mut masks: BTreeSet<u64> = BTreeSet::new();
    if n <= 6 {
        masks.extend(0..1u64 << n);
    } else {
        for m in 0..=n {
            masks.insert((1u64 << m) - 1); // the first m
            masks.insert(!((1u64 << m) - 1) & ((1u64 << n) - 1)); // all but the first m
        }
        for i in 0..n {
            masks.insert(((1u64 << n) - 1) & !(1 << i)); // all but one
        }
        for _ in 0..16 {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            masks.insert((*seed >> 11) & ((1u64 << n) - 1));
        }
    }
    let mut states = Vec::new();
    for mask in masks {
        let mut blocks = durable.clone();
        for (i, (first, data)) in pending.iter().enumerate() {
            if mask & (1 << i) != 0 {
                apply_whole(&mut blocks, *first, data);
            }
        }
        states.push(blocks);
    }
    for (torn, (first, data)) in pending.iter().enumerate() {
        let sectors = data.len() / SECTOR_BYTES;
        for point in tear_points(sectors) {
            for (with_others, range) in
                [(false, 0..point), (true, 0..point), (false, point..sectors)]
            {
                let mut blocks = durable.clone();
                if with_others {
                    for (i, (first, data)) in pending.iter().enumerate() {
                        if i != torn {
                            apply_whole(&mut blocks, *first, data);
                        }
                    }
                }
                apply_sectors(&mut blocks, *first, data, range);
                states.push(blocks);
            }
        }
    }
    states
}

/// Runs `steps` on a recorded volume of `block_count` blocks, then checks every crash state
/// of every point of the history. Returns how many states were checked.
fn check_workload(block_count: u64, steps: &[Step]) -> usize {
    let recorder = Recorder::new(block_count);
    let volume = Volume::mount(recorder.clone()).unwrap();
    let mut model = Snapshot::new();
    // `after[i]`: the model after step i; `commit_ok[i]`: step i committed successfully.
    let mut after = Vec::new();
    let mut commit_ok = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        recorder.mark(Event::StepStart(i));
        let expected = model_step(&mut model, step);
        let got = run_step(&volume, step);
        assert_eq!(got, expected, "step {i}: {step:?}");
        recorder.mark(Event::StepEnd(i));
        after.push(model.clone());
        commit_ok.push(step.commits() && got.is_ok());
    }
    drop(volume);
    let events = recorder.inner.lock().unwrap().events.clone();

    let empty = Snapshot::new();
    let mut durable = Blocks::new();
    let mut pending: Vec<(u64, StdArc<Vec<u8>>)> = Vec::new();
    let mut last_commit: Option<usize> = None;
    let mut in_flight: Option<usize> = None;
    let mut seed = 0x5eed;
    let mut checked = 0;
    for (k, event) in events.iter().enumerate() {
        match event {
            Event::Write { first, data } => pending.push((*first, data.clone())),
            Event::Flush => {
                for (first, data) in pending.drain(..) {
                    apply_whole(&mut durable, first, &data);
                }
            }
            Event::StepStart(i) => in_flight = Some(*i),
            Event::StepEnd(i) => {
                in_flight = None;
                if commit_ok[*i] {
                    last_commit = Some(*i);
                }
                continue;
            }
        }
        if matches!(event, Event::StepStart(_)) {
            continue;
        }
        let mut allowed = vec![last_commit.map_or(&empty, |i| &after[i])];
        if let Some(i) = in_flight.filter(|i| commit_ok[*i]) {
            allowed.push(&after[i]);
        }
        for state in crash_states(&durable, &pending, &mut seed) {
            check_state(block_count, state, &allowed, k);
            checked += 1;
        }
    }
    checked
}

/// Mounts a crash state: it must mount and hold one of the `allowed` states; then a write,
/// a sync and a remount must work.
fn check_state(block_count: u64, state: Blocks, allowed: &[&Snapshot], event: usize) {
    let disk = SparseDisk::from_blocks(state, block_count);
    let volume = Volume::mount(disk.clone())
        .unwrap_or_else(|error| panic!("cut after event {event}: mount fails: {error}"));
    let mut found = snapshot(&volume);
    assert!(
        allowed.contains(&&found),
        "cut after event {event}: unexpected state {:?}\nallowed: {allowed:?}",
        found.keys()
    );
    volume.write("after-the-cut", b"still works").unwrap();
    volume.sync().unwrap();
    drop(volume);
    let volume = Volume::mount(disk)
        .unwrap_or_else(|error| panic!("cut after event {event}: remount fails: {error}"));
    found.insert("after-the-cut".into(), Entry::File(b"still works".to_vec()));
    assert_eq!(
        snapshot(&volume),
        found,
        "cut after event {event}: after a write and a sync"
    );
}

#[test]
fn cuts_during_a_scripted_workload() {
    let steps = [
        Step::Write {
            path: "log",
            offset: 0,
            len: 100,
            seed: 1,
        },
        Step::SyncFile { path: "log" },
        Step::Append {
            path: "log",
            len: 5000,
            seed: 2,
        },
        Step::SyncFile { path: "log" },
        Step::Write {
            path: "snap.tmp",
            offset: 0,
            len: 9000,
            seed: 3,
        },
        Step::SyncFile { path: "snap.tmp" },
        Step::Rename {
            from: "snap.tmp",
            to: "snap",
        },
        Step::Write {
            path: "snap.tmp",
            offset: 0,
            len: 3000,
            seed: 4,
        },
        Step::SyncFile { path: "snap.tmp" },
        Step::Rename {
            from: "snap.tmp",
            to: "snap",
        },
        Step::Write {
            path: "log",
            offset: 2000,
            len: 300,
            seed: 5,
        },
        Step::SetLen {
            path: "log",
            len: 4100,
        },
        Step::Sync,
        Step::CreateDir { path: "d" },
        Step::Write {
            path: "d/a",
            offset: 0,
            len: 20_000,
            seed: 6,
        },
        Step::Remove { path: "log" },
        Step::Sync,
        Step::Rename { from: "d", to: "e" },
        Step::Checkpoint,
        Step::Append {
            path: "e/a",
            len: 100,
            seed: 7,
        },
        Step::Write {
            path: "b",
            offset: 0,
            len: 10,
            seed: 8,
        },
        Step::SyncFile { path: "b" },
        Step::Remove { path: "e/a" },
        Step::RemoveDir { path: "e" },
        Step::Sync,
    ];
    let checked = check_workload(1024, &steps);
    assert!(checked > 500, "{checked}");
}

#[test]
fn cuts_while_the_journal_wraps_into_checkpoints() {
    // 256 blocks: a 16-block journal, so checkpoints happen inside the recorded history.
    let mut steps = Vec::new();
    for i in 0..30u8 {
        steps.push(Step::Append {
            path: "log",
            len: 700,
            seed: i,
        });
        steps.push(Step::SyncFile { path: "log" });
        if i % 7 == 0 {
            steps.push(Step::Write {
                path: "snap.tmp",
                offset: 0,
                len: 6000,
                seed: i,
            });
            steps.push(Step::Rename {
                from: "snap.tmp",
                to: "snap",
            });
        }
    }
    check_workload(256, &steps);
}

/// Steps drawn from a small space of paths, so they collide (some fail, as the model says).
fn random_steps(seed: u64, count: usize) -> Vec<Step> {
    const PATHS: [&str; 6] = ["a", "b", "d", "d/a", "d/b", "c"];
    let mut state = seed;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut steps = Vec::new();
    for _ in 0..count {
        let path = PATHS[next(6) as usize];
        let other = PATHS[next(6) as usize];
        let step = match next(11) {
            0 | 1 => Step::Write {
                path,
                offset: next(9000),
                len: next(6000) as usize + 1,
                seed: next(256) as u8,
            },
            2 => Step::Append {
                path,
                len: next(3000) as usize + 1,
                seed: next(256) as u8,
            },
            3 => Step::SetLen {
                path,
                len: next(12_000),
            },
            4 => Step::Remove { path },
            5 => Step::CreateDir { path },
            6 => Step::RemoveDir { path },
            7 => Step::Rename {
                from: path,
                to: other,
            },
            8 | 9 => Step::SyncFile { path },
            _ => Step::Sync,
        };
        steps.push(step);
    }
    steps
}

#[test]
fn cuts_during_random_workloads() {
    for seed in 1..=4 {
        check_workload(512, &random_steps(seed, 30));
    }
}
