package storetest

import "testing"

func testService(t *testing.T, newStore NewStore) {}
