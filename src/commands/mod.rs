//! What each subcommand does, given its parsed arguments. `main` only dispatches here.

pub mod backtest;
pub mod run;
pub mod score;
pub mod train;
