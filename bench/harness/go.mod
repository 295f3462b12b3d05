module shoalbench

go 1.19
