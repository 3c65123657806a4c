//! The macro that declares counters once: each line gives a counter's kind, name, unit and
//! help, and the macro writes the snapshot's field (documented by the help), the atomic the
//! engine bumps, the code that reads one into the other, and the counter's row in the
//! catalog that `/stats`, `/metrics`, the C struct and Java render.

/// Declares a table of counters (see the module doc). The extra fields of the snapshot and
/// of the atomics are written out as they are; each counter line is
/// `Kind name, "unit", "help";`, optionally followed by `=> "prometheus_name{labels}"` where
/// the Prometheus name is not the derived `wspush_{prefix}{name}` (`_total` for a counter).
macro_rules! counter_table {
    (
        $(#[$snapshot_meta:meta])*
        pub struct $Snapshot:ident { $( $(#[$extra_meta:meta])* pub $extra:ident : $extra_ty:ty, )* }
        $(#[$atomics_meta:meta])*
        pub(crate) struct $Atomics:ident { $( $(#[$atomic_meta:meta])* pub $atomic:ident : $atomic_ty:ty, )* }
        catalog $CATALOG:ident from $snapshot_of:path, keys $key_prefix:literal, json $json_prefix:literal;
        $( $kind:ident $field:ident, $unit:literal, $help:literal $(=> $prometheus:literal)?; )*
    ) => {
        $(#[$snapshot_meta])*
        pub struct $Snapshot {
            $( #[doc = $help] pub $field: u64, )*
            $( $(#[$extra_meta])* pub $extra: $extra_ty, )*
        }

        $(#[$atomics_meta])*
        pub(crate) struct $Atomics {
            $( pub $field: std::sync::atomic::AtomicU64, )*
            $( $(#[$atomic_meta])* pub $atomic: $atomic_ty, )*
        }

        impl $Atomics {
            /// Adds every counter of the table to `snapshot`.
            pub(crate) fn add_counts_to(&self, snapshot: &mut $Snapshot) {
                $( snapshot.$field += self.$field.load(std::sync::atomic::Ordering::Relaxed); )*
            }
        }

        /// One row per counter of the table, in its order.
        pub(crate) const $CATALOG: &[$crate::stats::Metric] = &[
            $( $crate::stats::Metric {
                key: concat!($key_prefix, stringify!($field)),
                json: concat!($json_prefix, stringify!($field)),
                prometheus: $crate::stats::table::prometheus_name!($kind, $key_prefix, $field $(, $prometheus)?),
                kind: $crate::stats::MetricKind::$kind,
                unit: $unit,
                help: $help,
                value: |stats| $snapshot_of(stats).map(|snapshot| snapshot.$field),
            }, )*
        ];
    };
}

/// `wspush_{prefix}{name}`, with `_total` for a counter, unless given.
macro_rules! prometheus_name {
    ($kind:ident, $prefix:literal, $field:ident, $given:literal) => {
        $given
    };
    (Counter, $prefix:literal, $field:ident) => {
        concat!("wspush_", $prefix, stringify!($field), "_total")
    };
    (Gauge, $prefix:literal, $field:ident) => {
        concat!("wspush_", $prefix, stringify!($field))
    };
}

pub(crate) use {counter_table, prometheus_name};
