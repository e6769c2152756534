# Writes a file as a C string `name` and its length `name_len`, one source
# line per line of input (make: the status page, worker/ui/index.html).
BEGIN { print "#include <stddef.h>"; print "const char " name "[] ="; n = 0 }
{
    gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t")
    print "    \"" $0 "\\n\""; n++
}
END {
    if (n == 0) print "    \"\""
    print "    ;"
    print "const size_t " name "_len = sizeof(" name ") - 1;"
}
