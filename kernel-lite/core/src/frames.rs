//! A bitmap of physical frames (one bit each, set = free), with promises.
//!
//! A *promise* sets frames aside for one owner's [`FrameAccount`]: frames anyone else asks for
//! come only from what is neither in use nor promised, so an owner allocating within its promise
//! never fails and nobody else can eat into it. Frames are numbered (physical address / 4096);
//! where the bitmap lives is the caller's business.

/// Why frames could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer frames are free and unpromised than asked for.
    Exhausted { wanted: u64, available: u64 },
    /// The account has used its whole promise.
    AccountSpent { promised: u64 },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Exhausted { wanted, available } => write!(
                f,
                "out of physical memory ({wanted} frame(s) wanted, {available} free and unpromised)"
            ),
            FrameError::AccountSpent { promised } => {
                write!(f, "its guaranteed {promised} frame(s) are all in use")
            }
        }
    }
}

/// Frames promised to one owner, and how many of them it holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameAccount {
    pub promised: u64,
    pub held: u64,
}

/// The bitmap and its counters.
#[derive(Debug)]
pub struct FrameBitmap<'a> {
    words: &'a mut [u64],
    /// No free bit lies below this word.
    hint: usize,
    in_use: u64,
    peak: u64,
    total: u64,
    /// Frames promised to accounts and not held by them.
    promised: u64,
}

impl<'a> FrameBitmap<'a> {
    /// A bitmap over `words` with every frame taken; [`FrameBitmap::add_free`] adds the usable
    /// ones.
    pub fn new(words: &'a mut [u64]) -> FrameBitmap<'a> {
        words.fill(0);
        FrameBitmap {
            words,
            hint: 0,
            in_use: 0,
            peak: 0,
            total: 0,
            promised: 0,
        }
    }

    /// Frames the bitmap can describe.
    pub fn capacity(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    /// Adds frames `first..end` to the free ones (frames past the capacity are ignored).
    pub fn add_free(&mut self, first: u64, end: u64) {
        for frame in first..end.min(self.capacity()) {
            if !self.is_free(frame) {
                self.set(frame, true);
                self.total += 1;
            }
        }
    }

    fn set(&mut self, frame: u64, free: bool) {
        let (word, bit) = ((frame / 64) as usize, frame % 64);
        if free {
            self.words[word] |= 1 << bit;
            self.hint = self.hint.min(word);
        } else {
            self.words[word] &= !(1 << bit);
        }
    }

    pub fn is_free(&self, frame: u64) -> bool {
        self.words
            .get((frame / 64) as usize)
            .is_some_and(|word| word & (1 << (frame % 64)) != 0)
    }

    /// Frames free and not promised to anyone.
    pub fn available(&self) -> u64 {
        self.total - self.in_use - self.promised
    }

    fn exhausted(&self, wanted: u64) -> FrameError {
        FrameError::Exhausted {
            wanted,
            available: self.available(),
        }
    }

    /// Takes the lowest free frame; the caller has checked it may.
    fn take_one(&mut self) -> Option<u64> {
        while self.hint < self.words.len() {
            let word = self.words[self.hint];
            if word != 0 {
                let frame = self.hint as u64 * 64 + u64::from(word.trailing_zeros());
                self.set(frame, false);
                self.note_taken(1);
                return Some(frame);
            }
            self.hint += 1;
        }
        None
    }

    fn note_taken(&mut self, count: u64) {
        self.in_use += count;
        self.peak = self.peak.max(self.in_use);
    }

    /// A frame from what is neither in use nor promised.
    pub fn allocate(&mut self) -> Result<u64, FrameError> {
        if self.available() == 0 {
            return Err(self.exhausted(1));
        }
        self.take_one().ok_or_else(|| self.exhausted(1))
    }

    /// `count` contiguous frames whose first is a multiple of `align` (a power of two), from
    /// what is neither in use nor promised. Returns the first.
    pub fn allocate_run(&mut self, count: u64, align: u64) -> Result<u64, FrameError> {
        if count == 0 || count > self.available() || !align.is_power_of_two() {
            return Err(self.exhausted(count));
        }
        let mut start = (self.hint as u64 * 64).next_multiple_of(align);
        while start + count <= self.capacity() {
            match (start..start + count).find(|&frame| !self.is_free(frame)) {
                None => {
                    for frame in start..start + count {
                        self.set(frame, false);
                    }
                    self.note_taken(count);
                    return Ok(start);
                }
                Some(taken) => start = (taken + 1).next_multiple_of(align),
            }
        }
        Err(self.exhausted(count))
    }

    /// Gives back a frame taken by [`FrameBitmap::allocate`] or [`FrameBitmap::allocate_run`].
    /// Returns `false` (and changes nothing) if it was not taken: a double free.
    pub fn release(&mut self, frame: u64) -> bool {
        if frame >= self.capacity() || self.is_free(frame) {
            return false;
        }
        self.set(frame, true);
        self.in_use -= 1;
        true
    }

    /// Promises `count` frames to a new account, or says how short the pool is.
    pub fn promise(&mut self, count: u64) -> Result<FrameAccount, FrameError> {
        if count > self.available() {
            return Err(self.exhausted(count));
        }
        self.promised += count;
        Ok(FrameAccount {
            promised: count,
            held: 0,
        })
    }

    /// Ends an account: what it was promised and does not hold returns to the pool. Frames it
    /// still holds stay in use (their owner must release them with [`FrameBitmap::release`]).
    pub fn close(&mut self, account: &mut FrameAccount) {
        self.promised -= account.promised - account.held;
        *account = FrameAccount::default();
    }

    /// A frame for `account`, within its promise.
    pub fn allocate_for(&mut self, account: &mut FrameAccount) -> Result<u64, FrameError> {
        if account.held >= account.promised {
            return Err(FrameError::AccountSpent {
                promised: account.promised,
            });
        }
        // A promised frame is counted free, so one is always there.
        let frame = self.take_one().ok_or_else(|| self.exhausted(1))?;
        self.promised -= 1;
        account.held += 1;
        Ok(frame)
    }

    /// Gives back a frame `account` held; it stays promised to the account. `false` on a
    /// double free.
    pub fn release_for(&mut self, account: &mut FrameAccount, frame: u64) -> bool {
        if account.held == 0 || !self.release(frame) {
            return false;
        }
        account.held -= 1;
        self.promised += 1;
        true
    }

    /// Frames handed out and not given back.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// The most frames ever in use at once.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// All free-able frames.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Frames promised to accounts and not held by them.
    pub fn promised(&self) -> u64 {
        self.promised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitmap(words: &mut [u64], free: core::ops::Range<u64>) -> FrameBitmap<'_> {
        let mut bitmap = FrameBitmap::new(words);
        bitmap.add_free(free.start, free.end);
        bitmap
    }

    #[test]
    fn hands_out_the_lowest_free_frame_and_takes_it_back() {
        let mut words = [0; 4];
        let mut frames = bitmap(&mut words, 10..200);
        assert_eq!(frames.total(), 190);
        assert_eq!(frames.allocate(), Ok(10));
        assert_eq!(frames.allocate(), Ok(11));
        assert!(frames.release(10));
        assert!(!frames.release(10), "a double free is refused");
        assert!(!frames.release(50), "a free frame is refused");
        assert!(
            !frames.release(10_000),
            "a frame past the bitmap is refused"
        );
        assert_eq!(frames.allocate(), Ok(10));
        assert_eq!((frames.in_use(), frames.peak()), (2, 2));
    }

    #[test]
    fn holes_are_never_handed_out_and_exhaustion_is_an_error() {
        let mut words = [0; 2];
        let mut frames = FrameBitmap::new(&mut words);
        frames.add_free(1, 3);
        frames.add_free(100, 101);
        let got: Vec<u64> = (0..3).map(|_| frames.allocate().unwrap()).collect();
        assert_eq!(got, [1, 2, 100]);
        assert_eq!(
            frames.allocate(),
            Err(FrameError::Exhausted {
                wanted: 1,
                available: 0
            })
        );
    }

    #[test]
    fn promised_frames_are_kept_for_their_account() {
        let mut words = [0; 1];
        let mut frames = bitmap(&mut words, 0..10);
        let mut app = frames.promise(6).unwrap();
        assert_eq!(frames.available(), 4);
        assert_eq!(
            frames.promise(5),
            Err(FrameError::Exhausted {
                wanted: 5,
                available: 4
            })
        );
        for _ in 0..4 {
            frames.allocate().unwrap();
        }
        assert!(frames.allocate().is_err(), "the rest is promised");
        let mine: Vec<u64> = (0..6)
            .map(|_| frames.allocate_for(&mut app).unwrap())
            .collect();
        assert_eq!(mine.len(), 6);
        assert_eq!(
            frames.allocate_for(&mut app),
            Err(FrameError::AccountSpent { promised: 6 })
        );
        assert!(frames.release_for(&mut app, mine[0]));
        assert!(
            frames.allocate().is_err(),
            "a released frame stays promised to its account"
        );
        assert_eq!(frames.allocate_for(&mut app), Ok(mine[0]));
        for frame in mine {
            assert!(frames.release_for(&mut app, frame));
        }
        frames.close(&mut app);
        assert_eq!(frames.available(), 6);
    }

    #[test]
    fn runs_are_contiguous_aligned_and_skip_taken_frames() {
        let mut words = [0; 4];
        let mut frames = bitmap(&mut words, 1..256);
        let lone = frames.allocate().unwrap();
        assert_eq!(lone, 1);
        let run = frames.allocate_run(8, 8).unwrap();
        assert_eq!(run, 8);
        assert!((8..16).all(|frame| !frames.is_free(frame)));
        frames.allocate_run(1, 1).unwrap(); // frame 2
        assert_eq!(frames.allocate_run(16, 16), Ok(16));
        assert!(frames.allocate_run(0, 1).is_err());
        assert!(
            frames.allocate_run(4, 3).is_err(),
            "alignment must be a power of two"
        );
        assert!(frames.allocate_run(1000, 1).is_err());
        assert_eq!(frames.in_use(), 1 + 8 + 1 + 16);
    }

    #[test]
    fn a_run_never_takes_promised_frames() {
        let mut words = [0; 1];
        let mut frames = bitmap(&mut words, 0..16);
        let _app = frames.promise(12).unwrap();
        assert!(frames.allocate_run(5, 1).is_err());
        assert!(frames.allocate_run(4, 1).is_ok());
    }
}
