//! Who a browser is between requests: the sign-in sessions behind the
//! `dashgate_session` cookie, and the limiter that holds back an address
//! that keeps presenting bad credentials. The gate asks both; neither
//! decides anything itself.

pub mod limiter;
pub mod sessions;
