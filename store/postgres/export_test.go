package postgres

// LoadMigrations lets the external tests run one migration by hand.
var LoadMigrations = loadMigrations
