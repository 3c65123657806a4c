//! Every setting of the engine and the server, declared once ([`SETTINGS`]), and the one
//! builder ([`ConfigBuilder`]) that every front end feeds: the server's flags, variables and
//! TOML file as text, the C ABI's (and so Java's) JSON as JSON. Names, units, defaults,
//! prerequisites and error wording therefore agree everywhere.
//!
//! Durations are seconds, or text with a unit (`500ms`, `2m`); sizes are bytes, or text
//! with a unit (`4MiB`). Older names stay accepted as [`Alias`]es: the C ABI's `*_ms` keys
//! (milliseconds) and the server's `no_inbound` (the opposite of `publish_inbound`).

mod builder;
mod table;
mod value;

pub use builder::{ConfigBuilder, Reason, ServerSettings, SettingError};
pub use table::{env_of, find, flag_of, Alias, AliasMeaning, Group, Needs, Scope, Setting, SETTINGS};
pub use value::{parse_bool, parse_count, parse_duration, parse_list, parse_rate, parse_size, RawValue};
