use std::sync::Arc;

use object_store::memory::InMemory;
use proptest::prelude::*;

use super::*;

fn arb_id() -> impl Strategy<Value = RowId> {
    prop_oneof![any::<u64>().prop_map(RowId::Int), "[a-z0-9é-]{1,20}".prop_map(RowId::Str)]
}

fn arb_op() -> impl Strategy<Value = WalOp> {
    let attrs = proptest::option::of(proptest::collection::btree_map(
        "[a-z]{1,5}",
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            "[a-z ]{0,8}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ],
        0..4,
    ));
    prop_oneof![
        (arb_id(), proptest::collection::vec(-1e6f32..1e6, 0..16), attrs).prop_map(|(id, vector, attrs)| {
            WalOp::Upsert(Row { id, vector, attributes: attrs.map(|m| m.into_iter().collect()) })
        }),
        arb_id().prop_map(WalOp::Delete),
    ]
}

fn arb_entry() -> impl Strategy<Value = WalEntry> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), proptest::collection::vec(arb_op(), 0..20)).prop_map(
        |(seq, writer_epoch, commit_id, created_ms, ops)| WalEntry { seq, writer_epoch, commit_id, created_ms, ops },
    )
}

proptest! {
    #[test]
    fn entries_round_trip(entry in arb_entry()) {
        let bytes = entry.encode();
        prop_assert_eq!(WalEntry::decode(&bytes).unwrap(), entry);
    }

    #[test]
    fn any_single_byte_flip_or_truncation_is_detected(entry in arb_entry(), pos in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let bytes = entry.encode().to_vec();
        let mut flipped = bytes.clone();
        let i = pos.index(flipped.len());
        flipped[i] ^= 0x5a;
        prop_assert!(WalEntry::decode(&flipped).is_err());
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(WalEntry::decode(truncated).is_err());
    }
}

fn entry(seq: u64, commit_id: u64) -> WalEntry {
    WalEntry {
        seq,
        writer_epoch: 1,
        commit_id,
        created_ms: 0,
        ops: vec![WalOp::Upsert(Row { id: RowId::Int(seq), vector: vec![1.0, 2.0], attributes: None })],
    }
}

#[tokio::test]
async fn create_only_put_fences_a_second_writer_but_tolerates_its_own_retry() {
    let store = InMemory::new();
    let shard = ShardPaths::new("c", 0);
    put_entry(&store, &shard, &entry(1, 11)).await.unwrap();
    // Our own retry of the same attempt (e.g. after a timeout) is success.
    put_entry(&store, &shard, &entry(1, 11)).await.unwrap();
    // Another writer's entry with the same sequence is refused.
    let err = put_entry(&store, &shard, &entry(1, 22)).await.unwrap_err();
    assert!(is_fenced(&err), "{err}");
    assert_eq!(read_entry(&store, &shard, 1).await.unwrap().unwrap().commit_id, 11);
}

#[tokio::test]
async fn range_reads_stop_at_the_first_gap_and_listing_is_sorted() {
    let store: Store = Arc::new(InMemory::new());
    let shard = ShardPaths::new("c", 2);
    for seq in [1, 2, 3, 5] {
        put_entry(store.as_ref(), &shard, &entry(seq, seq)).await.unwrap();
    }
    let read = read_from(store.as_ref(), &shard, 1, 100).await.unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(read_from(store.as_ref(), &shard, 2, 1).await.unwrap().len(), 1);
    assert_eq!(list_seqs(store.as_ref(), &shard).await.unwrap(), vec![1, 2, 3, 5]);
    assert!(read_entry(store.as_ref(), &shard, 4).await.unwrap().is_none());
}

#[tokio::test]
async fn a_parallel_tail_read_returns_what_a_serial_one_does() {
    let store: Store = Arc::new(InMemory::new());
    let shard = ShardPaths::new("c", 0);
    // A tail longer than several windows, a gap, and entries after the gap.
    for seq in (1..=40).chain(42..=45) {
        put_entry(store.as_ref(), &shard, &entry(seq, seq)).await.unwrap();
    }
    let serial = read_from(store.as_ref(), &shard, 3, usize::MAX).await.unwrap();
    assert_eq!(serial.iter().map(|e| e.seq).collect::<Vec<_>>(), (3..=40).collect::<Vec<_>>());
    for window in [0, 1, 7, 16, 100] {
        let parallel = read_tail(store.as_ref(), &shard, 3, window).await.unwrap();
        assert_eq!(parallel, serial, "window {window}");
    }
    assert!(read_tail(store.as_ref(), &shard, 41, 16).await.unwrap().is_empty());
    assert!(read_tail(store.as_ref(), &shard, 46, 16).await.unwrap().is_empty());
}
