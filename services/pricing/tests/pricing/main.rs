//! Pricing tests on the real stores (each test has its own PostgreSQL database and ClickHouse
//! database) and against the reference elasticity fixture.

mod elasticity;
