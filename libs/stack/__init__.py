"""The local stack: embedded NATS (`nats.EmbeddedNats`) and PostgreSQL (`postgres.EmbeddedPostgres`), both
requiring credentials (`natsauth`: one NATS user per service; `pgroles`: one role per service; `credentials`:
kept in the data dir), a process `supervisor` that also restarts the servers, and `up`, which runs everything
for `stoker up` (configuration in `config`)."""
