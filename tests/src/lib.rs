//! Integration tests of quorate over real sockets and processes; they arrive
//! with the adapter.
