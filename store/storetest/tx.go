package storetest

import "testing"

func testTx(t *testing.T, newStore NewStore) {}
