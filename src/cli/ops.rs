//! The command line of the operator commands ([`wsctl::ops`]).

pub mod connections;
pub mod invoke;
pub mod keys;
pub mod publish;
pub mod rooms;
pub mod target;
pub mod watch;

pub use connections::ConnectionsCommand;
pub use keys::KeysCommand;
pub use publish::PublishArgs;
pub use rooms::RoomsCommand;
