# Checkpoints: the file format (proto/checkpoint.proto, src/ckpt/), gpt2_ckpt's
# shell test. src/core/crc32c.cc and src/tools/gpt2_ckpt.cc are picked up by the
# main globs; tests/ckpt/*_test.cc by the test glob.
target_sources(gpt2_proto PRIVATE proto/checkpoint.proto)
# PROTOS names only the new file: config.proto already has its generate rule.
protobuf_generate(TARGET gpt2_proto LANGUAGE cpp
                  PROTOS proto/checkpoint.proto
                  IMPORT_DIRS ${PROJECT_SOURCE_DIR}
                  PROTOC_OUT_DIR ${PROJECT_BINARY_DIR})

file(GLOB GPT2_CKPT_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/ckpt/*.cc)
target_sources(gpt2 PRIVATE ${GPT2_CKPT_SOURCES})

add_test(NAME ckpt_cli
         COMMAND ${PROJECT_SOURCE_DIR}/tests/ckpt/ckpt_cli_test.sh $<TARGET_FILE_DIR:gpt2_ckpt>
                 ${GPT2_TEST_DATA_DIR})
set_tests_properties(ckpt_cli PROPERTIES LABELS cpu TIMEOUT 120)
