//! One table per group of counters: each row is a counter's help text (its doc comment), its
//! name in the JSON status and in Rust, and its Prometheus name. From the table come the atomic
//! counters the threads bump, the snapshot the JSON status serializes, and the Prometheus lines,
//! so a counter is written down once (it was in five places: the atomics, the status DTO, the
//! copy between them, the metrics writer and the API document).

/// `counters! { /// doc  pub struct Live => Snapshot { /// help  field => "metric_total", } }`
/// defines `Live` (one `AtomicU64` per row, `Default`), `Snapshot` (one `u64` per row,
/// serialized with the rows' names), `Live::snapshot`, and `Snapshot::write_metrics`, which
/// writes one Prometheus counter per row with the row's doc as its help.
#[macro_export]
macro_rules! counters {
    (
        $(#[doc = $doc:literal])*
        pub struct $live:ident => $snap:ident {
            $( $(#[doc = $help:literal])+ $field:ident => $metric:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Default)]
        pub struct $live {
            $( $(#[doc = $help])+ pub $field: ::std::sync::atomic::AtomicU64, )+
        }

        $(#[doc = $doc])*
        /// (A snapshot, for the status API.)
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ::serde::Serialize)]
        pub struct $snap {
            $( $(#[doc = $help])+ pub $field: u64, )+
        }

        impl $live {
            /// Every counter's value now (each read on its own: they move independently).
            pub fn snapshot(&self) -> $snap {
                $snap {
                    $( $field: self.$field.load(::std::sync::atomic::Ordering::Relaxed), )+
                }
            }
        }

        impl $snap {
            /// One Prometheus counter per row, its doc the help text.
            pub fn write_metrics(&self, m: &mut $crate::api::metrics::Metrics) {
                $( m.counter($metric, concat!($($help),+), self.$field); )+
            }

            /// The rows: (JSON name, Prometheus name), for tests and documents.
            pub const ROWS: &'static [(&'static str, &'static str)] =
                &[$( (stringify!($field), $metric), )+];
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::api::metrics::Metrics;
    use std::sync::atomic::Ordering;

    crate::counters! {
        /// Two counters.
        pub struct Live => Snap {
            /// Things seen.
            seen => "test_seen_total",
            /// Things refused
            /// (two lines of doc).
            refused => "test_refused_total",
        }
    }

    #[test]
    fn one_table_gives_the_atomics_the_json_and_the_metrics() {
        let live = Live::default();
        live.seen.fetch_add(3, Ordering::Relaxed);
        live.refused.fetch_add(1, Ordering::Relaxed);
        let snap = live.snapshot();
        assert_eq!((snap.seen, snap.refused), (3, 1));
        let json = serde_json::to_value(snap).unwrap();
        assert_eq!(json, serde_json::json!({"seen": 3, "refused": 1}));
        let mut m = Metrics::default();
        snap.write_metrics(&mut m);
        let text = m.finish();
        assert!(
            text.contains("# HELP test_seen_total Things seen.\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE test_refused_total counter\ntest_refused_total 1\n"));
        assert!(
            text.contains("# HELP test_refused_total Things refused (two lines of doc).\n"),
            "{text}"
        );
        assert_eq!(Snap::ROWS[1], ("refused", "test_refused_total"));
    }
}
