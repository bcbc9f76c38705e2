package sqlcap

import (
	"context"
	"strconv"
	"strings"
)

// ---- load by INSERT (sql.load_method insert) ------------------------------------------------
//
// Redshift speaks PostgreSQL's protocol but has no COPY FROM STDIN. With sql.load_method
// insert a postgres binding's load sends the rows as multi-row parameterised INSERT
// statements instead (at most insertRows rows and insertParams parameters each), in the
// run's transaction, or in one of its own so that the load stays atomic.

const (
	insertRows   = 1000
	insertParams = 32767 // Redshift's (and PostgreSQL's 65535's) bound on parameters
)

// insertLoad writes the rows src yields into schema.table (cols) by INSERT statements.
func (s *pgSession) insertLoad(ctx context.Context, table string, cols []string, src *rowSource) (n int64, err error) {
	q := s.q()
	if s.tx == nil {
		tx, berr := s.p.pool.Begin(ctx)
		if berr != nil {
			return 0, berr
		}
		defer func() {
			if err != nil {
				_ = tx.Rollback(context.Background())
				n = 0
			} else {
				err = tx.Commit(ctx)
			}
		}()
		q = tx
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgQuoteIdent(c)
	}
	head := "INSERT INTO " + pgQuoteIdent(s.p.schema) + "." + pgQuoteIdent(table) + " (" + strings.Join(quoted, ", ") + ") VALUES "
	per := max(1, min(insertRows, insertParams/len(cols)))
	args := make([]any, 0, per*len(cols))
	rows := 0
	flush := func() error {
		if rows == 0 {
			return nil
		}
		var b strings.Builder
		b.WriteString(head)
		for r := range rows {
			if r > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for c := range cols {
				if c > 0 {
					b.WriteString(", ")
				}
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(r*len(cols) + c + 1))
			}
			b.WriteByte(')')
		}
		res, err := q.Query(ctx, b.String(), args...)
		if err != nil {
			return err
		}
		res.Close()
		if err := res.Err(); err != nil {
			return err
		}
		n += int64(rows)
		args, rows = args[:0], 0
		return nil
	}
	for src.Next() {
		args = append(args, src.out...)
		if rows++; rows == per {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if src.convErr != nil {
		return n, src.convErr
	}
	if src.err != nil {
		return n, badArg("load: %v", src.err)
	}
	return n, flush()
}
