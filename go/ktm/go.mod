module banyandb.local/ktm

go 1.19
