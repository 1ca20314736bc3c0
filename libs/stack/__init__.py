"""The local stack: embedded NATS (`nats.EmbeddedNats`) and PostgreSQL (`postgres.EmbeddedPostgres`),
a process `supervisor`, and `up`, which runs everything for `stoker up` (configuration in `config`)."""
