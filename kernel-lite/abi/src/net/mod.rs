//! The network contract: an app's binding ([`config`]), the frame rings between kernel-lite and
//! the app ([`ring`]), and the frame switch that decides which app a received frame belongs to
//! and whether a transmitted one may leave ([`switch`]).

pub mod config;
pub mod ring;
pub mod switch;

use crate::kcall::Events;

/// The event kernel-lite raises for an app when it has put frames on the app's receive ring.
pub const NET_EVENT: Events = Events::bit(0);
