// Command gensql writes the recorder's generated SQL files, sql/collect.sql and
// sql/install.sql, from the collectors' statements, the migrations and the definitions. It
// runs from go generate in the recorder's folder; TestGeneratedSQLInSync fails when they are
// stale.
package main

import (
	"log"
	"os"

	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
)

func main() {
	install, err := recorder.InstallSQL()
	if err != nil {
		log.Fatal(err)
	}
	for file, text := range map[string]string{"sql/collect.sql": recorder.CollectSQL(), "sql/install.sql": install} {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
