// Command gensql writes the schema's generated SQL files: the definitions generated from
// code (sql/collect.sql from the collectors' statements, diagnosis/patterns/findings.sql from
// the pattern folders) and sql/install.sql, from the migrations and the definitions. It runs
// from go generate in the schema's folder; TestGeneratedSQLInSync fails when they are stale.
package main

import (
	"log"
	"os"
	"path/filepath"

	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
)

func main() {
	install, err := schema.InstallSQL()
	if err != nil {
		log.Fatal(err)
	}
	files, err := schema.GeneratedFiles()
	if err != nil {
		log.Fatal(err)
	}
	files[schema.InstallFile] = install
	for file, text := range files {
		// From the schema's folder, where go generate runs this.
		if err := os.WriteFile(filepath.Join("..", filepath.FromSlash(file)), []byte(text), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
