package source

// WriterQueued is the number of Inserts waiting in the group-commit queue.
func WriterQueued(s *SQLite) int { return len(s.w.reqs) }

// WriterTaken is the number of Inserts the writer has received so far.
func WriterTaken(s *SQLite) int64 { return s.w.taken.Load() }

// ReadViaRows makes s read through clickhouse-go's rows (the reader before the native one).
func ReadViaRows(s *ClickHouse) { s.viaRows = true }
