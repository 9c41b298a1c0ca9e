//! One module per subcommand.

pub mod run;
pub mod secrets;
pub mod serve;
pub mod user;
