//! Named failpoints at each step of the queue protocol, so that a test can crash a process or fail
//! a call at one exact step. Compiled in only with the `failpoints` feature; without it
//! [`failpoint!`](crate::failpoint) expands to nothing. Points are configured from the `FAILPOINTS`
//! environment variable in the `fail` crate's syntax, e.g.
//! `FAILPOINTS='worker::after_commit=1*return(abort);worker::upsert=3*return(error)'`:
//!
//! - `return(abort)`: the process aborts on the spot (a crash, not a panic inside one task);
//! - `return(error)` or `return`: the enclosing function returns [`Error::Failpoint`], a transient
//!   error;
//! - `return(permanent)`: the same error, but one that retrying cannot help (a refused row);
//! - the `fail` crate's own actions (`sleep(ms)`, `panic`, `pause`, …) work as documented there.
#[cfg(feature = "failpoints")]
use crate::Error;

/// Configures the points named in `FAILPOINTS`; they stay configured while the guard lives.
/// Hold it in `main`: it is not `Send`.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

/// Evaluates the point `name`: aborts the process, or returns the error the caller returns.
/// Every firing leaves a line on stderr, whatever the log filter, so a test can tell that the
/// point was reached.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) -> Option<Error> {
    let arg = fail::eval(name, |arg| arg)?;
    let action = arg.as_deref().unwrap_or("error");
    eprintln!("failpoint {name} fired: {action}");
    match action {
        "abort" => std::process::abort(),
        "permanent" => Some(Error::Failpoint { point: name, permanent: true }),
        "error" => Some(Error::Failpoint { point: name, permanent: false }),
        other => panic!("failpoint {name}: unknown return({other}); use abort, error or permanent"),
    }
}

/// A named step of the protocol where a test can crash the process or make the enclosing
/// function return an error (see the `failpoint` module). Use it as a
/// statement in a function whose error type converts from [`crate::Error`].
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        if let Some(e) = $crate::failpoint::hit($name) {
            return Err(e.into());
        }
    };
}

/// A named step of the protocol; compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {};
}
