package chdbfront

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// readerSize is at least ch-go's own buffer size, so chproto.NewReader reuses our
// bufio.Reader and Peek tells whether another block follows.
const readerSize = 256 << 10

// transcodeNative re-encodes a Native stream written at protocol revision 0 (what an
// embedded engine writes: no block info, no custom-serialization flags) at revision rev,
// the client_protocol_version the client asked for, one block at a time.
func transcodeNative(r io.Reader, w io.Writer, rev uint64) error {
	br := bufio.NewReaderSize(r, readerSize)
	rd := chproto.NewReader(br)
	sc := &column.ServerContext{Timezone: time.UTC}
	var buf chproto.Buffer
	for {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // clean end between blocks
			}
			return err
		}
		block := proto.Block{ServerContext: sc}
		if err := block.Decode(rd, 0); err != nil {
			return fmt.Errorf("chdbfront: decode Native block: %w", err)
		}
		buf.Reset()
		if err := block.Encode(&buf, rev); err != nil {
			return fmt.Errorf("chdbfront: encode Native block: %w", err)
		}
		if _, err := w.Write(buf.Buf); err != nil {
			return err
		}
	}
}
