package storage

import (
	"context"
	"database/sql"
	"strconv"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/migrator"
	"gorm.io/gorm/schema"
)

// sqliteDialector is a minimal gorm dialector over an existing *sql.DB opened
// with modernc.org/sqlite. It exists so that the process links one SQLite
// engine only: gorm.io/driver/sqlite imports mattn/go-sqlite3 (cgo) and
// glebarez/sqlite registers a second "sqlite" driver. The schema is created by
// the SQL migrations, so gorm's generic migrator is enough here.
type sqliteDialector struct {
	conn *sql.DB
}

var _ gorm.Dialector = (*sqliteDialector)(nil)
var _ gorm.SavePointerDialectorInterface = (*sqliteDialector)(nil)

func (d *sqliteDialector) Name() string { return DialectSQLite }

func (d *sqliteDialector) Initialize(db *gorm.DB) error {
	db.ConnPool = d.conn
	var version string
	if err := d.conn.QueryRowContext(context.Background(), "select sqlite_version()").Scan(&version); err != nil {
		return err
	}
	// RETURNING and ON CONFLICT need SQLite >= 3.35; modernc ships far newer.
	callbacks.RegisterDefaultCallbacks(db, &callbacks.Config{
		CreateClauses:        []string{"INSERT", "VALUES", "ON CONFLICT", "RETURNING"},
		UpdateClauses:        []string{"UPDATE", "SET", "FROM", "WHERE", "RETURNING"},
		DeleteClauses:        []string{"DELETE", "FROM", "WHERE", "RETURNING"},
		LastInsertIDReversed: true,
	})
	for k, v := range d.clauseBuilders() {
		if _, ok := db.ClauseBuilders[k]; !ok {
			db.ClauseBuilders[k] = v
		}
	}
	return nil
}

func (d *sqliteDialector) clauseBuilders() map[string]clause.ClauseBuilder {
	return map[string]clause.ClauseBuilder{
		"LIMIT": func(c clause.Clause, builder clause.Builder) {
			if limit, ok := c.Expression.(clause.Limit); ok {
				lmt := -1
				if limit.Limit != nil && *limit.Limit >= 0 {
					lmt = *limit.Limit
				}
				if lmt >= 0 || limit.Offset > 0 {
					builder.WriteString("LIMIT ")
					builder.WriteString(strconv.Itoa(lmt))
				}
				if limit.Offset > 0 {
					builder.WriteString(" OFFSET ")
					builder.WriteString(strconv.Itoa(limit.Offset))
				}
			}
		},
		"FOR": func(c clause.Clause, builder clause.Builder) {
			if _, ok := c.Expression.(clause.Locking); ok {
				return // no row locks in SQLite: write transactions are immediate
			}
			c.Build(builder)
		},
	}
}

func (d *sqliteDialector) Migrator(db *gorm.DB) gorm.Migrator {
	return migrator.Migrator{Config: migrator.Config{DB: db, Dialector: d, CreateIndexAfterCreateTable: true}}
}

func (d *sqliteDialector) DataTypeOf(field *schema.Field) string {
	switch field.DataType {
	case schema.Bool:
		return "numeric"
	case schema.Int, schema.Uint:
		if field.AutoIncrement {
			return "integer PRIMARY KEY AUTOINCREMENT"
		}
		return "integer"
	case schema.Float:
		return "real"
	case schema.String:
		return "text"
	case schema.Time:
		return "datetime"
	case schema.Bytes:
		return "blob"
	}
	return string(field.DataType)
}

func (d *sqliteDialector) DefaultValueOf(field *schema.Field) clause.Expression {
	if field.AutoIncrement {
		return clause.Expr{SQL: "NULL"}
	}
	return clause.Expr{SQL: "DEFAULT"}
}

func (d *sqliteDialector) BindVarTo(writer clause.Writer, _ *gorm.Statement, _ interface{}) {
	writer.WriteByte('?')
}

// QuoteTo quotes each dot-separated part of an identifier with double quotes.
func (d *sqliteDialector) QuoteTo(writer clause.Writer, str string) {
	for i, part := range strings.Split(str, ".") {
		if i > 0 {
			writer.WriteByte('.')
		}
		part = strings.Trim(part, "`\"")
		writer.WriteByte('"')
		writer.WriteString(strings.ReplaceAll(part, `"`, `""`))
		writer.WriteByte('"')
	}
}

func (d *sqliteDialector) Explain(sql string, vars ...interface{}) string {
	return logger.ExplainSQL(sql, nil, `"`, vars...)
}

func (d *sqliteDialector) SavePoint(tx *gorm.DB, name string) error {
	return tx.Exec("SAVEPOINT " + name).Error
}

func (d *sqliteDialector) RollbackTo(tx *gorm.DB, name string) error {
	return tx.Exec("ROLLBACK TO SAVEPOINT " + name).Error
}
