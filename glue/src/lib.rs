//! app_glue: where every protocol meets the application (IPAugenblick's app_glue, re-made).
//!
//! The callback API, the stack builder and the multi-core runtime arrive with their issue; for
//! now glue re-exports the protocols so applications depend on glue alone.

pub use blink_ipv4 as ipv4;
pub use blink_netcore as netcore;
pub use blink_raw as raw;
pub use blink_tcp as tcp;
pub use blink_udp as udp;
