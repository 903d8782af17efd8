//! Random workloads (proptest) against a model of paths and contents: every step's result
//! matches the model's prediction; the volume's contents match the model after every step;
//! a remount without a sync (a clean power cut) shows the state of the last commit, and a
//! remount after a sync shows everything.

use super::*;
use proptest::prelude::*;

const PATHS: [&str; 7] = ["a", "b", "d", "d/a", "d/b", "d/e", "d/e/a"];

#[derive(Debug, Clone)]
enum Action {
    Step(Step),
    /// Drops the volume without syncing and mounts the disk again.
    Remount,
}

fn path() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&PATHS[..])
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (path(), 0u64..20_000, 1usize..9000, any::<u8>())
            .prop_map(|(path, offset, len, seed)| Action::Step(Step::Write { path, offset, len, seed })),
        3 => (path(), 1usize..5000, any::<u8>()).prop_map(|(path, len, seed)| Action::Step(Step::Append { path, len, seed })),
        2 => (path(), 0u64..30_000).prop_map(|(path, len)| Action::Step(Step::SetLen { path, len })),
        2 => path().prop_map(|path| Action::Step(Step::Remove { path })),
        2 => path().prop_map(|path| Action::Step(Step::CreateDir { path })),
        1 => path().prop_map(|path| Action::Step(Step::RemoveDir { path })),
        2 => (path(), path()).prop_map(|(from, to)| Action::Step(Step::Rename { from, to })),
        2 => path().prop_map(|path| Action::Step(Step::SyncFile { path })),
        1 => Just(Action::Step(Step::Sync)),
        1 => Just(Action::Step(Step::Checkpoint)),
        1 => Just(Action::Remount),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_volume_follows_the_model(actions in proptest::collection::vec(action(), 1..60)) {
        let disk = SparseDisk::new(512);
        let mut volume = Volume::mount(disk.clone()).unwrap();
        let mut model = Snapshot::new();
        let mut committed = Snapshot::new();
        for action in &actions {
            match action {
                Action::Step(step) => {
                    let expected = model_step(&mut model, step);
                    prop_assert_eq!(run_step(&volume, step), expected, "{:?}", step);
                    if step.commits() && expected.is_ok() {
                        committed = model.clone();
                    }
                }
                Action::Remount => {
                    drop(volume);
                    volume = Volume::mount(disk.clone()).unwrap();
                    model = committed.clone();
                }
            }
            prop_assert_eq!(&snapshot(&volume), &model);
        }
        volume.sync().unwrap();
        drop(volume);
        let volume = Volume::mount(disk).unwrap();
        prop_assert_eq!(&snapshot(&volume), &model);
        volume.verify().unwrap();
    }
}
